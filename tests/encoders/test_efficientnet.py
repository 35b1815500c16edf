import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from skimage import data

from xmodal.encoders.efficientnet import (
    Conv2dSame,
    EfficientNetLite0,
    default_weights_path,
    drop_connect,
    efficientnet_lite0,
    same_padding,
)
from xmodal.errors import CheckpointError
from xmodal.registry import IMAGE_ENCODERS


@pytest.fixture(scope="module")
def model() -> EfficientNetLite0:
    return efficientnet_lite0(pretrained=True).eval()


def _prep(image: np.ndarray, size: int = 224) -> torch.Tensor:
    """Resize to size × size (PIL bicubic), RGB / 255, (x − 0.5) / 0.5 → (1, 3, size, size)."""
    im = Image.fromarray(image).convert("RGB").resize((size, size), Image.BICUBIC)
    x = torch.from_numpy(np.array(im)).permute(2, 0, 1).float() / 255
    mean = torch.tensor(EfficientNetLite0.image_mean)[:, None, None]
    std = torch.tensor(EfficientNetLite0.image_std)[:, None, None]
    return ((x - mean) / std)[None]


@pytest.mark.slow
def test_imagenet_predictions(model: EfficientNetLite0) -> None:
    images = torch.cat([_prep(data.chelsea()), _prep(data.coffee())])
    with torch.no_grad():
        probs = model.classify(images).softmax(dim=-1)
    top = probs.argmax(dim=-1).tolist()
    assert 281 <= top[0] <= 285  # tabby / tiger / Persian / Siamese / Egyptian cat
    assert top[1] == 967 and probs[1, 967] > 0.5  # espresso
    # golden values measured with this preprocessing (torch 2.13 CPU)
    assert top[0] == 285
    torch.testing.assert_close(
        probs[:, [285, 967]].diagonal(), torch.tensor([0.7733, 0.9025]), atol=2e-3, rtol=0
    )


@pytest.mark.slow
def test_tokens_and_pooled(model: EfficientNetLite0) -> None:
    x224 = _prep(data.chelsea(), 224)
    with torch.no_grad():
        out = model(x224)
        out128 = model(_prep(data.chelsea(), 128))
    assert out.tokens.shape == (1, 49, 1280) and out.pooled.shape == (1, 1280)
    assert out.mask is None
    assert out128.tokens.shape == (1, 16, 1280)  # 128 / 32 = 4 → 4×4
    torch.testing.assert_close(out.pooled, out.tokens.mean(dim=1))
    assert (out.tokens >= 0).all() and (out.tokens <= 6).all()  # after ReLU6
    assert model.token_dim == model.pooled_dim == 1280


@pytest.mark.slow
def test_stages_blocks_and_multiscale(model: EfficientNetLite0) -> None:
    x = _prep(data.coffee(), 224)
    with torch.no_grad():
        stages = model.forward_stages(x)
        out = model(x)
        multi = model.pooled_stages(x, stages=(4, 5, 6))
        h = x
        for block in model.blocks():
            h = block(h)
    sides = [112, 56, 28, 14, 14, 7, 7, 7]
    assert [tuple(s.shape[1:]) for s in stages] == [
        (c, s, s) for c, s in zip(model.stage_channels, sides, strict=True)
    ]
    torch.testing.assert_close(stages[-1].flatten(2).transpose(1, 2), out.tokens)
    torch.testing.assert_close(h, stages[-1])  # the blocks, chained, are the trunk
    assert multi.shape == (1, 112 + 192 + 320)
    torch.testing.assert_close(multi[:, :112], stages[4].mean(dim=(2, 3)))
    assert model.pooled_stages(x).shape == (1, 112 + 192 + 1280)


def test_blocks_cover_the_trunk() -> None:
    m = EfficientNetLite0()
    blocks = m.blocks()
    assert len(blocks) == 18  # stem, 16 MBConv blocks, head
    in_blocks = {id(p) for b in blocks for p in b.parameters()}
    trunk = {id(p) for n, p in m.named_parameters() if not n.startswith("_fc.")}
    assert in_blocks == trunk
    for p in blocks[0].parameters():  # views share the registered modules
        p.requires_grad_(False)
    assert not m._conv_stem.weight.requires_grad


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "pads"),
    [(224, 3, 2, (0, 1)), (225, 3, 2, (1, 1)), (7, 5, 2, (2, 2)), (8, 5, 2, (1, 2)), (14, 5, 1, (2, 2))],
)
def test_same_padding_puts_the_extra_pixel_after(
    size: int, kernel: int, stride: int, pads: tuple[int, int]
) -> None:
    assert same_padding(size, kernel, stride) == pads
    conv = Conv2dSame(2, 3, kernel, stride=stride, bias=False)
    x = torch.randn(1, 2, size, size + 1)
    y = conv(x)
    assert y.shape[-2:] == (-(-size // stride), -(-(size + 1) // stride))  # ceil
    left, right = same_padding(size + 1, kernel, stride)
    expected = F.conv2d(F.pad(x, (left, right, *pads)), conv.weight, stride=stride)
    torch.testing.assert_close(y, expected)


def test_odd_input_sizes() -> None:
    m = EfficientNetLite0().eval()
    with torch.no_grad():
        assert m(torch.zeros(1, 3, 225, 225)).tokens.shape == (1, 64, 1280)  # 225→113→57→29→15→8
        assert m(torch.zeros(1, 3, 97, 61)).tokens.shape == (1, 4 * 2, 1280)  # ceil(97/32)=4, ceil(61/32)=2


def test_strict_load_rejects_a_corrupted_state_dict(tmp_path) -> None:
    state = torch.load(default_weights_path(), map_location="cpu", weights_only=True)
    state["_blocks.3._depthwise_kernel.weight"] = state.pop("_blocks.3._depthwise_conv.weight")
    bad = tmp_path / "renamed.pth"
    torch.save(state, bad)
    with pytest.raises(CheckpointError, match=r"renamed\.pth.*_blocks\.3\._depthwise_conv\.weight") as e:
        EfficientNetLite0().load_pretrained(bad)
    assert "\n" not in str(e.value)
    with pytest.raises(CheckpointError, match="not found"):
        EfficientNetLite0().load_pretrained(tmp_path / "missing.pth")
    pickled = tmp_path / "pickled.pth"
    torch.save({"model": object()}, pickled)
    with pytest.raises(CheckpointError, match=r"cannot load .*pickled\.pth"):
        EfficientNetLite0().load_pretrained(pickled)


def test_training_mode_backward() -> None:
    m = EfficientNetLite0(drop_connect_rate=0.5)
    out = m(torch.randn(2, 3, 32, 32))
    logits = m.classify(torch.randn(2, 3, 32, 32))
    (out.pooled.sum() + logits.sum()).backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_registered() -> None:
    assert IMAGE_ENCODERS.get("efficientnet_lite0") is efficientnet_lite0
    assert isinstance(efficientnet_lite0(pretrained=False), EfficientNetLite0)


def test_drop_connect_drops_whole_samples_in_training_only() -> None:
    x = torch.ones(1000, 3, 2, 2)
    torch.testing.assert_close(drop_connect(x, 0.3, training=False), x)
    y = drop_connect(x, 0.3, training=True)
    per_sample = y.flatten(1)
    assert ((per_sample == 0).all(dim=1) | (per_sample == 1 / 0.7).all(dim=1)).all()
    assert 0.2 < (per_sample[:, 0] == 0).float().mean() < 0.4
