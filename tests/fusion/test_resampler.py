"""Tests for xmodal.fusion.resampler: shapes, masking, gradients and parity with open_flamingo."""

from __future__ import annotations

import pytest
import torch

from xmodal.fusion.resampler import PerceiverResampler


def tiny(**kw) -> PerceiverResampler:
    torch.manual_seed(0)
    args = dict(dim=16, depth=2, n_latents=5, dim_head=4, heads=2, max_num_media=3, max_num_frames=2)
    return PerceiverResampler(**(args | kw))


@pytest.mark.parametrize("num_tokens", [1, 7, 49])
def test_output_shape_is_independent_of_the_number_of_visual_tokens(num_tokens):
    r = tiny()
    assert r(torch.randn(2, 3, 2, num_tokens, 16)).shape == (2, 3, 5, 16)
    assert r(torch.randn(2, 3, num_tokens, 16)).shape == (2, 3, 5, 16)  # one frame per image
    assert r(torch.randn(2, num_tokens, 16)).shape == (2, 1, 5, 16)  # one image


def test_input_projection_maps_encoder_width_to_latent_width():
    r = tiny(in_dim=24)
    assert r(torch.randn(2, 2, 9, 24)).shape == (2, 2, 5, 16)


def test_padding_tokens_are_ignored_exactly_as_if_absent():
    r = tiny().eval()
    x = torch.randn(2, 2, 6, 16)
    padded = torch.cat([x, torch.randn(2, 2, 3, 16) * 100], dim=2)  # 3 junk tokens per image
    mask = torch.ones(2, 2, 9, dtype=torch.bool)
    mask[:, :, 6:] = False
    torch.testing.assert_close(r(padded, mask), r(x), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(r(padded), r(x), atol=1e-3)  # unmasked junk does change the output


def test_a_fully_padded_image_still_gives_finite_latents():
    r = tiny()
    mask = torch.zeros(1, 2, 4, dtype=torch.bool)
    assert torch.isfinite(r(torch.randn(1, 2, 4, 16), mask)).all()


def test_images_are_resampled_independently_but_know_their_position():
    r = tiny(max_num_media=None, max_num_frames=None).eval()
    x = torch.randn(1, 2, 4, 16)
    out = r(x)
    torch.testing.assert_close(out[:, 1:], r(x[:, 1:]))  # no time embedding: image 2 alone = image 2 in pair
    r_time = tiny().eval()
    assert not torch.allclose(r_time(x)[:, 1:], r_time(x[:, 1:]))  # with it, position 2 ≠ position 1


def test_every_parameter_gets_a_gradient():
    r = tiny(in_dim=8)
    x = torch.randn(2, 3, 2, 4, 8, requires_grad=True)
    r(x).square().mean().backward()
    for name, p in r.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_bad_shapes_are_clear_errors():
    r = tiny()
    with pytest.raises(ValueError, match="resampler input must be"):
        r(torch.randn(16))
    with pytest.raises(ValueError, match="max_num_media is 3"):
        r(torch.randn(1, 4, 2, 16))
    with pytest.raises(ValueError, match="mask shape"):
        r(torch.randn(1, 2, 4, 16), torch.ones(1, 2, 5, dtype=torch.bool))


def test_matches_open_flamingo_perceiver_resampler(open_flamingo_helpers):
    ours = tiny()
    ref = open_flamingo_helpers.PerceiverResampler(
        dim=16, depth=2, dim_head=4, heads=2, num_latents=5, max_num_media=3, max_num_frames=2
    )
    ref.load_state_dict(ours.state_dict())  # same parameter names and shapes, strict
    x = torch.randn(2, 3, 2, 7, 16, dtype=torch.float64)
    ours, ref = ours.double(), ref.double()
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    a, b = ours(x1), ref(x2)
    torch.testing.assert_close(a, b)
    a.square().sum().backward()
    b.square().sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    for (name, p), q in zip(ours.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, msg=name)
