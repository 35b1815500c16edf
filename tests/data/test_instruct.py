"""Tests for xmodal.data.instruct: encoding chat samples and generation prompts within the context."""

from __future__ import annotations

import pytest

from xmodal.data.instruct import collate, encode_prompts
from xmodal.errors import XmodalError
from xmodal.lm import (
    IGNORE_INDEX,
    IMAGE_TOKEN,
    TruncationCounter,
    add_multimodal_tokens,
    encode_prompt,
    load_causal_lm,
)
from xmodal.lm.tiny import save_tiny_lm


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    _, tok = load_causal_lm(save_tiny_lm(tmp_path_factory.mktemp("lm"), "gpt2"))
    add_multimodal_tokens(tok)
    return tok


def test_long_prompts_lose_their_middle_and_keep_images_and_the_generation_prompt(tok):
    image = tok.convert_tokens_to_ids(IMAGE_TOKEN)
    short = [{"role": "user", "content": f"{IMAGE_TOKEN}\nwhat is it?"}]
    long = [{"role": "user", "content": f"{IMAGE_TOKEN}\n" + "what is it? " * 40}]
    full_short, full_long = encode_prompt(tok, short), encode_prompt(tok, long)
    counter = TruncationCounter()
    out = encode_prompts(
        tok,
        [short, long],
        image_token_id=image,
        tokens_per_image=5,
        max_length=60,
        max_new_tokens=10,
        truncation=counter,
    )
    assert out[0] == full_short  # fits: unchanged
    budget = 60 - 10 - (5 - 1)
    assert len(out[1]) == budget
    head = full_long.index(image) + 1
    assert out[1][:head] == full_long[:head]  # bos, template start and the placeholder stay
    tail = tok.encode(" ASSISTANT:", add_special_tokens=False)
    assert out[1][-len(tail) :] == tail == full_long[-len(tail) :]  # the generation prompt stays
    assert counter.as_dict() == {"seen": 2, "truncated": 1, "tokens_dropped": len(full_long) - budget}
    with pytest.raises(XmodalError, match="cannot hold its images and an answer"):
        encode_prompts(
            tok,
            [long],
            image_token_id=image,
            tokens_per_image=40,
            max_length=60,
            max_new_tokens=10,
            truncation=TruncationCounter(),
        )


def test_collate_pads_right_and_masks_labels():
    ids, mask, labels = collate([[5, 6, 7], [8]], pad_id=0, labels=[[IGNORE_INDEX, 6, 7], [8]])
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert labels.tolist() == [[IGNORE_INDEX, 6, 7], [8, IGNORE_INDEX, IGNORE_INDEX]]
    _, _, none = collate([[1]], pad_id=0)
    assert none is None
