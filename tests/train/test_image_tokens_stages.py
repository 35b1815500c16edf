"""Multi-scale image tokens: stage maps pooled to the last stage's grid and concatenated."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from xmodal.train.features import FeatureCache
from xmodal.train.image_tokens import image_token_table


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)) for _ in range(3)]


def test_stage_tokens_shape_and_last_stage_equals_plain_tokens(tmp_path):
    torch.set_num_threads(1)
    imgs = _images()
    cache = FeatureCache(tmp_path)
    plain = image_token_table(lambda i: imgs[i], 3, image_size=64, cache=cache)
    multi = image_token_table(lambda i: imgs[i], 3, image_size=64, cache=cache, stages=(4, 5, 7))
    assert plain.shape == (3, 4, 1280)
    assert multi.shape == (3, 4, 112 + 192 + 1280)
    torch.testing.assert_close(multi[..., -1280:], plain)  # the head's map is the last block
    # a stage map at twice the grid is 2x2 average-pooled: check one token by hand
    from xmodal.data.transforms import ImagePreprocess
    from xmodal.registry import IMAGE_ENCODERS

    enc = IMAGE_ENCODERS.get("efficientnet_lite0")(pretrained=True).eval()
    pre = ImagePreprocess(size=64, mean=enc.image_mean, std=enc.image_std)
    with torch.no_grad():
        maps = enc.forward_stages(torch.stack([pre(im) for im in imgs]))
    assert maps[4].shape[-1] == 2 * maps[7].shape[-1]
    torch.testing.assert_close(multi[:, 0, :112], maps[4][:, :, :2, :2].mean(dim=(2, 3)))
    assert len(list(tmp_path.glob("*.safetensors"))) == 2  # separate cache entries
