"""Token maps of a frozen image encoder for a list of images, computed once and cached on disk.

Vision-language recipes (LLaVA, Flamingo, BLIP-2, captioning) keep the image encoder frozen, so each
image's ``EncoderOutput.tokens`` (T, C) is computed once (EfficientNet-Lite0 at 128 px: a 4×4 map, T = 16,
C = 1280; at 224 px 7×7) and stored by :class:`~xmodal.train.features.FeatureCache`, keyed by the
encoder's name, arguments and weights hash, the image size, and a hash of the preprocessed pixels (so
changed images or preprocessing compute afresh).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from xmodal.train.features import FeatureCache, weights_fingerprint


def image_token_table(
    load: Callable[[int], Image.Image],
    n: int,
    *,
    encoder_name: str = "efficientnet_lite0",
    encoder_args: dict[str, Any] | None = None,
    image_size: int = 128,
    batch_size: int = 64,
    cache: FeatureCache | None = None,
    log: Callable[[str], None] | None = None,
    stages: Sequence[int] | None = None,
) -> Tensor:
    """(n, T, C) float32 tokens of images ``load(0) ... load(n - 1)`` from a frozen registered encoder.

    Args:
        load: index → RGB PIL image.
        encoder_name / encoder_args: a registered image encoder (default: pretrained EfficientNet-Lite0).
        image_size: square input side (the encoder's own mean/std normalisation).
        cache: where the result is kept (default ``FeatureCache()`` under ``$XMODAL_HOME``).
        stages: multi-scale tokens (encoders with ``forward_stages``, e.g. EfficientNet-Lite0): the maps
            of these stages, each average-pooled to the last stage's grid, concatenated along channels,
            e.g. (4, 5, 7) → (n, 16, 112 + 192 + 1280) at 128 px. None: ``EncoderOutput.tokens``.
    """
    from xmodal.data.transforms import ImagePreprocess
    from xmodal.registry import IMAGE_ENCODERS

    args = {"pretrained": True} if encoder_args is None else dict(encoder_args)
    encoder = IMAGE_ENCODERS.get(encoder_name)(**args).eval()
    pre = ImagePreprocess(size=image_size, mean=encoder.image_mean, std=encoder.image_std)
    pixels = [pre(load(i)) for i in range(n)]
    h = hashlib.sha256()
    for p in pixels:
        h.update(p.numpy().tobytes())
    parts: dict[str, Any] = {
        "kind": "image_tokens",
        "encoder": encoder_name,
        "args": args,
        "weights": weights_fingerprint(encoder),
        "size": image_size,
        "pixels": h.hexdigest()[:24],
        "n": n,
    }
    if stages is not None:
        parts["stages"] = [int(i) for i in stages]  # only when set: the plain tables keep their keys

    def tokens_of(x: Tensor) -> Tensor:
        if stages is None:
            return encoder(x).tokens  # type: ignore[no-any-return]
        maps = encoder.forward_stages(x)
        grid = maps[stages[-1]].shape[-2:]
        pooled = [torch.nn.functional.adaptive_avg_pool2d(maps[i], grid) for i in stages]
        return torch.cat(pooled, dim=1).flatten(2).transpose(1, 2)  # (B, h*w, sum C_i)

    @torch.no_grad()
    def compute() -> Tensor:
        out = []
        for i in range(0, n, batch_size):
            out.append(tokens_of(torch.stack(pixels[i : i + batch_size])))
            if log is not None and (i // batch_size) % 10 == 0:
                log(f"image tokens: {min(i + batch_size, n)}/{n}")
        return torch.cat(out)

    return (cache or FeatureCache()).get_or_compute(parts, compute)


def stack_loaders(
    *groups: tuple[Sequence[str], Callable[[str], Image.Image]],
) -> tuple[list[str], Callable[[int], Image.Image]]:
    """Concatenate (ids, load-by-id) groups into one id list and one load-by-index function."""
    ids: list[str] = []
    loaders: list[Callable[[str], Image.Image]] = []
    for group_ids, fn in groups:
        ids += list(group_ids)
        loaders += [fn] * len(group_ids)
    return ids, lambda i: loaders[i](ids[i])
