"""Tests for xmodal.models.llava: splicing, the two training stages, LoRA, generation, bad input."""

from __future__ import annotations

import pytest
import torch

from xmodal.config import OptimConfig
from xmodal.data.instruct import collate, encode_samples
from xmodal.errors import XmodalError
from xmodal.fusion.projector import ProjectorConfig
from xmodal.lm import (
    IGNORE_INDEX,
    IMAGE_TOKEN,
    MaskedCounter,
    TruncationCounter,
    encode_prompt,
    load_causal_lm,
)
from xmodal.lm.tiny import save_tiny_lm
from xmodal.models.llava_io import LlavaSpec, LoraSettings, build_llava, load_llava, save_llava
from xmodal.train.generic import build_adamw

T, C = 4, 24  # image tokens per image, vision width


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def lm_dir(request, tmp_path_factory):
    return save_tiny_lm(tmp_path_factory.mktemp(request.param), request.param)


def make(lm_dir, lora: bool = False):
    torch.manual_seed(0)
    lm, tok = load_causal_lm(lm_dir)
    spec = LlavaSpec(vision_dim=C, projector=ProjectorConfig(), lora=LoraSettings(enabled=lora, rank=4))
    return build_llava(lm, tok, spec), tok, spec


CONVS = [
    [
        {"role": "user", "content": f"{IMAGE_TOKEN}\nwhat is it?"},
        {"role": "assistant", "content": "a cat face"},
    ],
    [
        {"role": "user", "content": f"{IMAGE_TOKEN}\nis it red?"},
        {"role": "assistant", "content": "yes"},
        {"role": "user", "content": "and is it a dog?"},
        {"role": "assistant", "content": "no"},
    ],
]


def batch(model, tok, convs=CONVS, max_length=128):
    samples = encode_samples(
        tok,
        convs,
        [[i] for i in range(len(convs))],
        image_token_id=model.image_token_id,
        tokens_per_image=T,
        max_length=max_length,
        truncation=TruncationCounter(),
        masked=MaskedCounter(),
    )
    ids, mask, labels = collate([s.input_ids for s in samples], tok.pad_token_id, [s.labels for s in samples])
    images = torch.randn(len(convs), T, C, generator=torch.Generator().manual_seed(1))
    return ids, images, mask, labels


def one_step(model, inputs):
    opt = build_adamw(model, OptimConfig(lr=1e-2, weight_decay=0.1))
    model.train()
    model(*inputs).loss.backward()
    opt.step()


def test_stage1_updates_only_the_projector(lm_dir):
    model, tok, _ = make(lm_dir)
    model.set_stage(1)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    one_step(model, batch(model, tok))
    for n, p in model.named_parameters():
        if n.startswith("projector."):
            assert not torch.equal(p, before[n]), f"{n} did not change"
        else:
            assert torch.equal(p, before[n]), f"{n} changed in stage 1"
    for n, b in model.named_buffers():
        assert torch.equal(b, buffers[n])


def test_stage2_full_trains_projector_and_lm(lm_dir):
    model, tok, _ = make(lm_dir)
    model.set_stage(2)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    one_step(model, batch(model, tok))
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert any(n.startswith("projector.") for n in changed)
    assert any("layers.1" in n or "h.1" in n for n in changed)  # a transformer block of the LM


def test_stage2_masks_every_non_answer_token(lm_dir):
    model, tok, _ = make(lm_dir)
    ids, images, mask, labels = batch(model, tok)
    out = model(ids, images, mask, labels)
    for b in range(ids.shape[0]):
        # expected spliced labels: each <image> becomes T masked positions, the rest copied
        row = []
        for i in range(int(mask[b].sum())):
            row += [IGNORE_INDEX] * T if ids[b, i] == model.image_token_id else [int(labels[b, i])]
        got = out.labels[b][out.attention_mask[b].bool()].tolist()
        assert got == row
        assert (out.labels[b][~out.attention_mask[b].bool()] == IGNORE_INDEX).all()
        # the unmasked tokens are exactly the answers (+ the template's end-of-turn)
        kept = [int(ids[b, i]) for i in range(ids.shape[1]) if labels[b, i] != IGNORE_INDEX]
        text = tok.decode(kept).replace(tok.eos_token, "|").replace(" ", "")
        assert text == ("acatface|" if b == 0 else "yes|no|")
    # the loss is the mean cross-entropy over exactly those positions
    logits, lab = out.logits[:, :-1], out.labels[:, 1:]
    keep = lab != IGNORE_INDEX
    manual = torch.nn.functional.cross_entropy(logits[keep], lab[keep])
    torch.testing.assert_close(out.loss, manual)


def test_lora_stage2_changes_only_lora_and_projector(lm_dir):
    plain, tok, _ = make(lm_dir)
    model, _, _ = make(lm_dir, lora=True)
    inputs = batch(model, tok)
    with torch.no_grad():  # LoRA starts as the identity: the wrapped LM computes what the plain one did
        torch.testing.assert_close(model(*inputs).logits, plain(*inputs).logits, rtol=0, atol=1e-6)
    model.set_stage(2)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("projector.") or "lora_" in n for n in trainable)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    one_step(model, inputs)
    one_step(model, inputs)  # the second step moves lora_A too (B is non-zero after the first)
    for n, p in model.named_parameters():
        if n.startswith("projector.") or "lora_" in n:
            assert not torch.equal(p, before[n]), f"{n} did not change"
        else:
            assert torch.equal(p, before[n]), f"{n} changed"


def test_placeholder_count_must_match_images(lm_dir):
    model, tok, _ = make(lm_dir)
    ids, _, mask, _ = batch(model, tok)
    with pytest.raises(XmodalError, match=r"sample 0: the prompt has 1 <image> placeholder\(s\) but 2 image"):
        model(ids, [torch.randn(2, T, C), torch.randn(1, T, C)], mask)
    with pytest.raises(XmodalError, match=r"has 1 <image> placeholder.*but 0 image"):
        model(ids, [torch.randn(1, T, C), torch.randn(0, T, C)], mask)
    two = [
        [{"role": "user", "content": f"{IMAGE_TOKEN}{IMAGE_TOKEN} hi"}, {"role": "assistant", "content": "a"}]
    ]
    with pytest.raises(XmodalError, match=r"2 <image> placeholder\(s\) but 1 image"):
        encode_samples(
            tok,
            two,
            [[0]],
            image_token_id=model.image_token_id,
            tokens_per_image=T,
            max_length=128,
            truncation=TruncationCounter(),
            masked=MaskedCounter(),
        )


def test_truncation_and_all_masked_are_counted_and_checked(lm_dir):
    model, tok, _ = make(lm_dir)
    long_q = "what is it? " * 30
    convs = [
        [{"role": "user", "content": f"{IMAGE_TOKEN}\n{long_q}"}, {"role": "assistant", "content": "a cat"}],
        CONVS[0],
    ]
    trunc, masked = TruncationCounter(), MaskedCounter(max_share=0.2)
    samples = encode_samples(
        tok,
        convs,
        [[0], [1]],
        image_token_id=model.image_token_id,
        tokens_per_image=T,
        max_length=40,
        truncation=trunc,
        masked=masked,
    )
    assert trunc.truncated == 1 and trunc.seen == 2
    assert len(samples[0].input_ids) == 40 - (T - 1)  # text + image positions fill the context exactly
    assert masked.all_masked == 1  # the answer was cut away
    with pytest.raises(XmodalError, match=r"1 of 2 samples \(50.0%\) have no answer token"):
        masked.check()
    with pytest.raises(XmodalError, match="does not fit the LM's context"):
        encode_samples(
            tok,
            convs[1:],
            [[0]],
            image_token_id=model.image_token_id,
            tokens_per_image=200,
            max_length=128,
            truncation=TruncationCounter(),
            masked=MaskedCounter(),
        )
    ids, _, mask, _ = batch(model, tok)
    with pytest.raises(XmodalError, match="more than the LM's context 128"):
        model(ids, torch.randn(2, 130, C), mask)


def test_batched_generation_equals_one_by_one_and_a_plain_greedy_loop(lm_dir):
    model, tok, _ = make(lm_dir)
    prompts = [
        encode_prompt(tok, [{"role": "user", "content": f"{IMAGE_TOKEN}\nwhat is it?"}]),
        encode_prompt(
            tok, [{"role": "user", "content": f"{IMAGE_TOKEN}\nwhich of these is it: a cat or a dog?"}]
        ),
    ]
    ids, mask, _ = collate(prompts, tok.pad_token_id)
    images = torch.randn(2, T, C, generator=torch.Generator().manual_seed(2))
    kw = {"max_new_tokens": 6, "eos_token_id": -1, "pad_token_id": tok.pad_token_id}  # no early stop
    together = model.generate(ids, images, mask, **kw)
    for b in range(2):
        alone = model.generate(torch.tensor([prompts[b]]), images[b : b + 1], **kw)
        assert together[b].tolist() == alone[0].tolist()
        # reference: greedy decoding by re-running the whole sequence each step
        seq = list(prompts[b])
        for _ in range(6):
            logits = model(torch.tensor([seq]), images[b : b + 1]).logits
            seq.append(int(logits[0, -1].argmax()))
        assert seq[len(prompts[b]) :] == alone[0].tolist()


def test_save_and_load_round_trip(lm_dir, tmp_path):
    model, tok, spec = make(lm_dir, lora=True)
    model.set_stage(2)
    one_step(model, batch(model, tok))
    save_llava(tmp_path / "m", model, tok, spec, {"step": 1})
    loaded, tok2, state = load_llava(tmp_path / "m")
    assert state["step"] == 1 and tok2.chat_template == tok.chat_template
    inputs = batch(model, tok)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(*inputs).logits, loaded(*inputs).logits)
