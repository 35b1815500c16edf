"""Tests for xmodal.models.captioner: cross-attention parity, causality, and a captioner that learns."""

from __future__ import annotations

import pytest
import torch

from xmodal.data.caption_tokens import BPETokenizer, teacher_forcing
from xmodal.layers.attention import CrossAttention
from xmodal.models.captioner import Captioner, ScratchDecoder


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_cross_attention_fused_matches_reference_forward_and_backward():
    torch.manual_seed(0)
    fused = CrossAttention(dim=32, num_heads=4, memory_dim=24)
    ref = CrossAttention(dim=32, num_heads=4, memory_dim=24, fused=False)
    ref.load_state_dict(fused.state_dict())
    x, mem = torch.randn(3, 5, 32), torch.randn(3, 7, 24)
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[1, 4:] = False
    outs = []
    for module in (fused, ref):
        xx, mm = x.clone().requires_grad_(), mem.clone().requires_grad_()
        y = module(xx, mm, mask)
        (y * torch.linspace(-1, 1, 32)).sum().backward()
        outs.append((y, xx.grad, mm.grad, module.q.weight.grad))
    for a, b in zip(*outs, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert outs[0][2][1, 4:].abs().max() == 0  # masked memory tokens get no gradient


def test_scratch_decoder_is_causal_and_last_only_matches():
    torch.manual_seed(0)
    dec = ScratchDecoder(vocab_size=20, dim=32, depth=2, num_heads=4, dropout=0.0).eval()
    mem = torch.randn(2, 3, 32)
    ids = torch.randint(0, 20, (2, 6))
    changed = ids.clone()
    changed[:, 4] = (ids[:, 4] + 1) % 20
    a, b = dec(ids, mem), dec(changed, mem)
    assert a.shape == (2, 6, 20)
    torch.testing.assert_close(a[:, :4], b[:, :4])
    assert not torch.allclose(a[:, 4:], b[:, 4:])
    torch.testing.assert_close(dec(ids, mem, last_only=True)[:, 0], a[:, -1])


def test_captioner_learns_to_caption_four_images():
    """Teacher forcing on 4 (image, caption) pairs, then greedy and beam decoding reproduce each caption."""
    torch.manual_seed(0)
    captions = ["grinning face", "red heart", "rocket", "face with tears of joy"]
    tok = BPETokenizer.compact(captions)
    model = Captioner(
        decoder=ScratchDecoder(vocab_size=tok.vocab_size, dim=64, depth=2, num_heads=4, dropout=0.0),
        image_dim=16,
        num_image_tokens=3,
        bos=tok.bos,
        eos=tok.eos,
    )
    images = torch.randn(4, 3, 16)
    ids, labels, _ = teacher_forcing(
        [tok.bos] * 4, [tok.encode(c) for c in captions], eos=tok.eos, pad=tok.pad, max_len=12
    )
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(80):
        opt.zero_grad()
        loss = model.loss(images, ids, labels, label_smoothing=0.05)
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    assert loss.item() < 0.3 * first
    greedy = model.generate(images, max_new_tokens=10)
    assert [tok.decode(t) for t in greedy.tokens] == captions and all(greedy.finished)
    beam = model.generate(images, max_new_tokens=10, beam_size=3, alpha=0.6)
    assert [tok.decode(t) for t in beam.tokens] == captions


def test_image_memory_mlp_projection():
    from xmodal.models.captioner import ImageMemory

    torch.manual_seed(0)
    x = torch.randn(2, 4, 12)
    lin, mlp = (
        ImageMemory(in_dim=12, dim=8, num_tokens=4),
        ImageMemory(in_dim=12, dim=8, num_tokens=4, depth=2),
    )
    assert isinstance(lin.proj, torch.nn.Linear) and len(mlp.proj) == 3  # Linear, GELU, Linear
    ref = torch.nn.functional.layer_norm(
        mlp.proj[2](torch.nn.functional.gelu(mlp.proj[0](x))) + mlp.pos, (8,), mlp.norm.weight, mlp.norm.bias
    )
    torch.testing.assert_close(mlp(x), ref)
    assert lin(x).shape == (2, 4, 8)
    with pytest.raises(ValueError, match="depth"):
        ImageMemory(in_dim=12, dim=8, num_tokens=4, depth=0)
