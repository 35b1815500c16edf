"""Tests for xmodal.lm.chat and xmodal.lm.sequences: template, answer-only labels, truncation, counts."""

from __future__ import annotations

import pytest

from xmodal.errors import XmodalError
from xmodal.lm import (
    DEFAULT_CHAT_TEMPLATE,
    IGNORE_INDEX,
    IMAGE_TOKEN,
    MaskedCounter,
    TruncationCounter,
    add_multimodal_tokens,
    encode_chat,
    encode_prompt,
    load_causal_lm,
    mask_labels,
    render,
    truncate,
    user_turn,
)
from xmodal.lm.tiny import LLAMA2_CHAT_TEMPLATE, save_tiny_lm


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    out = {}
    for arch in ("gpt2", "llama"):
        _, tok = load_causal_lm(save_tiny_lm(tmp_path_factory.mktemp(arch), arch))
        add_multimodal_tokens(tok)
        out[arch] = tok
    return out


def test_default_template_is_llava_style(tokenizers):
    tok = tokenizers["gpt2"]
    msgs = [user_turn("what is it?"), {"role": "assistant", "content": "a cat face"}]
    assert render(tok, msgs) == "USER: <image>\nwhat is it? ASSISTANT: a cat face<|endoftext|>"
    assert tok.chat_template == DEFAULT_CHAT_TEMPLATE
    assert render(tok, msgs[:1], add_generation_prompt=True) == "USER: <image>\nwhat is it? ASSISTANT:"


def test_folder_template_is_used_when_present(tokenizers):
    tok = tokenizers["llama"]
    assert tok.chat_template == LLAMA2_CHAT_TEMPLATE
    msgs = [user_turn("what is it?"), {"role": "assistant", "content": "a cat face"}]
    assert render(tok, msgs) == "<s>[INST] <image>\nwhat is it? [/INST] a cat face </s>"


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_labels_cover_exactly_the_answers(tokenizers, arch):
    tok = tokenizers[arch]
    msgs = [
        user_turn("what is it?"),
        {"role": "assistant", "content": "a cat face"},
        user_turn("is it red?", image=False),
        {"role": "assistant", "content": "yes"},
    ]
    enc = encode_chat(tok, msgs)
    assert len(enc.input_ids) == len(enc.labels)
    assert enc.input_ids[0] == tok.bos_token_id  # exactly one bos
    assert enc.input_ids.count(tok.convert_tokens_to_ids(IMAGE_TOKEN)) == 1
    answer_pos = [i for i, x in enumerate(enc.labels) if x != IGNORE_INDEX]
    assert all(enc.labels[i] == enc.input_ids[i] for i in answer_pos)
    # the answer tokens decode to the two answers (+ the template's end of turn) and nothing else
    spans, cur = [], []
    for i, x in enumerate(enc.labels):
        if x != IGNORE_INDEX:
            cur.append(enc.input_ids[i])
        elif cur:
            spans.append(cur)
            cur = []
    spans += [cur] if cur else []
    decoded = [tok.decode(s).strip() for s in spans]
    assert decoded == [f"a cat face{tok.eos_token}", f"yes{tok.eos_token}"] or decoded == [
        f"a cat face {tok.eos_token}",
        f"yes {tok.eos_token}",
    ]
    # the prompt for generation is the first turn's prefix of the training sequence
    prompt = encode_prompt(tok, msgs[:1])
    assert enc.input_ids[: len(prompt)] == prompt
    assert enc.labels[len(prompt) - 1] == IGNORE_INDEX and enc.labels[len(prompt)] != IGNORE_INDEX


def test_inconsistent_template_is_a_clear_error(tokenizers):
    tok = tokenizers["gpt2"]
    saved = tok.chat_template
    tok.chat_template = "{% for m in messages|reverse %}{{ m['content'] }}{% endfor %}"
    try:
        with pytest.raises(XmodalError, match="prefix by prefix"):
            encode_chat(tok, [user_turn("q"), {"role": "assistant", "content": "a"}])
    finally:
        tok.chat_template = saved


def test_truncate_counts_every_cut():
    c = TruncationCounter()
    assert truncate([1, 2, 3], 5, c) == [1, 2, 3]
    assert truncate([1, 2, 3, 4, 5, 6], 4, c) == [1, 2, 3, 4]
    assert c.as_dict() == {"seen": 2, "truncated": 1, "tokens_dropped": 2}
    with pytest.raises(ValueError, match="max_len"):
        truncate([1], 0)


def test_mask_labels_and_all_masked_share_check():
    assert mask_labels([5, 6, 7], [False, True, True]) == [IGNORE_INDEX, 6, 7]
    with pytest.raises(ValueError, match="3 ids but 2"):
        mask_labels([5, 6, 7], [True, True])
    c = MaskedCounter(max_share=0.25)
    for labels in ([1, 2], [IGNORE_INDEX, 3], [IGNORE_INDEX, IGNORE_INDEX], [4]):
        c.record(labels)
    assert (c.seen, c.all_masked, c.share) == (4, 1, 0.25)
    c.check()  # exactly at the limit: allowed
    c.record([IGNORE_INDEX])
    with pytest.raises(XmodalError, match=r"2 of 5 samples \(40.0%\) have no answer token.*limit is 25.0%"):
        c.check()
