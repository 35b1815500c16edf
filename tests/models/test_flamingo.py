"""Tests for xmodal.models.flamingo: exact LM logits at initialisation, trainable parts, media counts."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from xmodal.errors import XmodalError
from xmodal.fusion.resampler import PerceiverResampler
from xmodal.lm import add_multimodal_tokens, load_causal_lm
from xmodal.lm.tiny import save_tiny_lm
from xmodal.models.flamingo import Flamingo, find_decoder_layers


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one intra-op thread is fastest and immune to a busy machine's contention."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def tiny_lm(request, tmp_path_factory):
    """(lm with <image>/<|endofchunk|> added, tokenizer, token ids), loaded from a folder on disk."""
    folder = save_tiny_lm(tmp_path_factory.mktemp(request.param), request.param, layers=4)
    lm, tok = load_causal_lm(folder)
    ids = add_multimodal_tokens(tok, lm)
    return lm, tok, ids


def build(lm: nn.Module, ids: dict[str, int], every: int = 2, immediate: bool = True) -> Flamingo:
    torch.manual_seed(0)
    resampler = PerceiverResampler(
        dim=24, depth=1, n_latents=3, dim_head=8, heads=2, in_dim=20, max_num_media=4
    )
    return Flamingo(
        lm=lm,
        resampler=resampler,
        media_token_id=ids["<image>"],
        cross_attn_every=every,
        xattn_heads=2,
        xattn_dim_head=8,
        only_attend_immediate_media=immediate,
    )


def interleaved(tok, ids, captions: list[str]) -> torch.Tensor:
    text = "".join(f"<image>{c}<|endofchunk|>" for c in captions)
    return torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])


def test_finds_the_decoder_layers_of_gpt2_and_llama(tiny_lm):
    lm, _, _ = tiny_lm
    path, layers = find_decoder_layers(lm)
    assert path == {"GPT2LMHeadModel": "transformer.h", "LlamaForCausalLM": "model.layers"}[type(lm).__name__]
    assert len(layers) == 4


def test_unknown_architecture_is_a_clear_error():
    with pytest.raises(
        XmodalError, match=r"cannot find the decoder layers of Linear: looked for model\.layers"
    ):
        find_decoder_layers(nn.Linear(2, 2))


@pytest.mark.parametrize("immediate", [True, False])
def test_logits_equal_the_frozen_lm_exactly_at_initialisation(tiny_lm, immediate):
    lm, tok, ids = tiny_lm
    reference = copy.deepcopy(lm)
    model = build(copy.deepcopy(lm), ids, every=1, immediate=immediate).eval()
    g = torch.Generator().manual_seed(1)
    for n_img in (1, 3):
        input_ids = interleaved(tok, ids, ["a cat face", "a red apple", "yes"][:n_img]).repeat(2, 1)
        text = input_ids[1] != ids["<image>"]  # sample 1: any other tokens around the same images
        input_ids[1, text] = torch.randint(0, ids["<image>"], (int(text.sum()),), generator=g)
        media = torch.randn(2, n_img, 5, 20, generator=g)
        with torch.no_grad():
            got = model(input_ids, media=media).logits
            want = reference(input_ids=input_ids).logits
        assert torch.equal(got, want)
    # and not merely because the visual path is dead: opening the gates changes the logits
    for block in model.xattn_blocks():
        nn.init.constant_(block.attn_gate, 1.0)
    with torch.no_grad():
        assert not torch.equal(model(input_ids, media=media).logits, want)


def test_blocks_every_k_layers_and_only_resampler_and_xattn_train(tiny_lm):
    lm, tok, ids = tiny_lm
    model = build(copy.deepcopy(lm), ids, every=2).train()
    assert len(model.xattn_blocks()) == 2  # before layers 2 and 4 of 4
    assert not model.lm.training and model.xattn_blocks()[0].training
    input_ids = interleaved(tok, ids, ["a cat face", "yes"])
    labels = input_ids.clone()
    labels[input_ids == ids["<image>"]] = -100
    out = model(input_ids, media=torch.randn(1, 2, 5, 20), labels=labels)
    assert out.loss is not None and torch.isfinite(out.loss)
    out.loss.backward()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".xattn." in n or n.startswith("resampler.") for n in trainable)
    assert any(n.startswith("resampler.") for n in trainable)
    for n, p in model.named_parameters():
        if p.requires_grad:
            # at init only the gates get a gradient through the xattn paths (tanh(0) = 0 blocks the rest)
            if n.endswith("_gate"):
                assert p.grad is not None and p.grad.abs().sum() > 0, n
        else:
            assert p.grad is None, n


def test_training_steps_open_the_gates_and_reduce_the_loss(tiny_lm):
    lm, tok, ids = tiny_lm
    model = build(copy.deepcopy(lm), ids, every=1).train()
    input_ids = interleaved(tok, ids, ["a cat face"]).repeat(2, 1)
    labels = input_ids.clone()
    labels[input_ids == ids["<image>"]] = -100
    media = torch.randn(2, 1, 5, 20)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(8):
        loss = model(input_ids, media=media, labels=labels).loss
        assert loss is not None
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1
    assert all(b.attn_gate.item() != 0 for b in model.xattn_blocks())


def test_placeholder_and_image_counts_must_agree(tiny_lm):
    lm, tok, ids = tiny_lm
    model = build(copy.deepcopy(lm), ids)
    input_ids = interleaved(tok, ids, ["a cat face", "yes"])  # two <image>
    with pytest.raises(XmodalError, match=r"sample 0 has 2 <image> placeholder\(s\) but 3 image\(s\)"):
        model(input_ids, media=torch.randn(1, 3, 5, 20))
    with pytest.raises(XmodalError, match=r"has 2 <image> placeholder\(s\) but 1 image\(s\)"):
        model(input_ids, media=torch.randn(1, 1, 5, 20))
    with pytest.raises(XmodalError, match="exactly one of images= or media="):
        model(input_ids)


def test_greedy_generation_with_left_padding_matches_unpadded(tiny_lm):
    lm, tok, ids = tiny_lm
    model = build(copy.deepcopy(lm), ids, every=1).eval()
    for block in model.xattn_blocks():
        nn.init.constant_(block.attn_gate, 0.5)
    long = interleaved(tok, ids, ["a red apple", "a cat"])[:, :-1]  # ends in a caption: continue it
    short = interleaved(tok, ids, ["", "a cat"])[:, :-1]  # same two images, shorter text
    pad = long.shape[1] - short.shape[1]
    batch = torch.cat([long, torch.cat([torch.zeros(1, pad, dtype=torch.long), short], dim=1)])
    media = torch.randn(2, 2, 5, 20)
    mask = torch.ones_like(batch)
    mask[1, :pad] = 0
    for use_cache in (False, True):
        both = model.generate(batch, media=media, attention_mask=mask, max_new_tokens=6, use_cache=use_cache)
        alone = model.generate(short, media=media[1:], max_new_tokens=6, use_cache=use_cache)
        assert both.shape == (2, 6)
        assert torch.equal(both[1], alone[0])
        assert (both != ids["<image>"]).all()
    # the key/value cache is an optimisation only: same tokens as recomputing the prefix every step
    plain = model.generate(batch, media=media, attention_mask=mask, max_new_tokens=6, use_cache=False)
    assert torch.equal(both, plain)


def test_beam_search_with_left_padding_scores_its_captions_and_beam_one_is_greedy(tiny_lm):
    lm, tok, ids = tiny_lm
    model = build(copy.deepcopy(lm), ids, every=1).eval()
    for block in model.xattn_blocks():
        nn.init.constant_(block.attn_gate, 0.5)
    long = interleaved(tok, ids, ["a red apple", "a cat"])[:, :-1]
    short = interleaved(tok, ids, ["", "a cat"])[:, :-1]
    pad = long.shape[1] - short.shape[1]
    batch = torch.cat([long, torch.cat([torch.zeros(1, pad, dtype=torch.long), short], dim=1)])
    media = torch.randn(2, 2, 5, 20)
    mask = torch.ones_like(batch)
    mask[1, :pad] = 0
    stops = [ids["<|endofchunk|>"], 7]  # several stop ids, one of them frequent for the random LM
    greedy = model.generate(batch, media=media, attention_mask=mask, max_new_tokens=6, eos_token_id=stops)
    one = model.beam_search(batch, media=media, attention_mask=mask, eos=stops, max_new_tokens=6, beam_size=1)
    for b in range(2):
        row = greedy[b].tolist()
        ended = next((i for i, t in enumerate(row) if t in stops), None)
        assert one.tokens[b] == (row if ended is None else row[:ended])
        assert one.finished[b] == (ended is not None)
    eos = 7
    found = model.beam_search(batch, media=media, attention_mask=mask, eos=eos, max_new_tokens=6, beam_size=3)
    alone = model.beam_search(short, media=media[1:], eos=eos, max_new_tokens=6, beam_size=3)
    assert found.tokens[1] == alone.tokens[0] and found.scores[1] == pytest.approx(alone.scores[0], abs=1e-5)
    for b, prompt in enumerate((long, short)):  # the score is the model's log-probability of what it returns
        seq = found.tokens[b] + ([eos] if found.finished[b] else [])
        full = torch.cat([prompt, torch.tensor([seq])], dim=1)
        with torch.no_grad():
            logits = model(full, media=media[b : b + 1]).logits[0, prompt.shape[1] - 1 : -1].clone()
        logits[:, ids["<image>"]] = float("-inf")
        want = logits.log_softmax(-1).gather(1, torch.tensor(seq)[:, None]).sum()
        assert found.scores[b] == pytest.approx(float(want), abs=1e-4)
        assert ids["<image>"] not in found.tokens[b]


def test_cached_decoding_attends_to_the_images_of_the_prompt(tiny_lm):
    """With the key/value cache, a new token must see the last prompt image (immediate mode) or all of
    them: its logits match a full forward over the prompt + that token."""
    lm, tok, ids = tiny_lm
    for immediate in (True, False):
        model = build(copy.deepcopy(lm), ids, every=1, immediate=immediate).eval()
        for block in model.xattn_blocks():
            nn.init.constant_(block.attn_gate, 0.7)
        prompt = interleaved(tok, ids, ["a red apple", "a cat"])[:, :-2]
        media = torch.randn(1, 2, 5, 20)
        new = model.generate(prompt, media=media, max_new_tokens=2, use_cache=True)
        full = torch.cat([prompt, new[:, :1]], dim=1)
        with torch.no_grad():
            want = model(full, media=media).logits[:, -1].clone()
        want[:, ids["<image>"]] = float("-inf")
        assert int(want.argmax(-1)) == int(new[0, 1])


def test_registered_for_the_registry_wide_model_test():
    import xmodal.models.fusion_cases  # noqa: F401  (registers the tiny cases)
    from xmodal.registry import VL_MODELS

    assert {"flamingo-tiny-gpt2", "flamingo-tiny-llama"} <= set(VL_MODELS.names())


def test_pixels_through_a_frozen_image_encoder_equal_precomputed_tokens(tiny_lm):
    from xmodal.registry import IMAGE_ENCODERS

    lm, tok, ids = tiny_lm
    torch.manual_seed(0)
    vit = IMAGE_ENCODERS.get("vit")(image_size=16, patch_size=8, dim=20, depth=1, num_heads=2)
    resampler = PerceiverResampler(dim=24, depth=1, n_latents=3, dim_head=8, heads=2, in_dim=20)
    model = Flamingo(
        lm=copy.deepcopy(lm),
        resampler=resampler,
        media_token_id=ids["<image>"],
        vision_encoder=vit,
        xattn_heads=2,
    ).train()
    assert not vit.training and not any(p.requires_grad for p in vit.parameters())
    for block in model.xattn_blocks():
        nn.init.constant_(block.attn_gate, 0.5)
    images = torch.randn(1, 2, 3, 16, 16)
    input_ids = interleaved(tok, ids, ["a cat face", "yes"])
    out = model(input_ids, images=images)
    media = model.encode_media(images)
    assert media.shape == (1, 2, 4, 20)  # the 2×2 patch tokens of each image
    assert torch.equal(out.logits, model(input_ids, media=media).logits)


def test_trainable_new_token_rows_start_as_the_lm_and_learn(tiny_lm):
    lm, tok, ids = tiny_lm
    new = (ids["<image>"], ids["<|endofchunk|>"])
    torch.manual_seed(0)
    resampler = PerceiverResampler(dim=24, depth=1, n_latents=3, dim_head=8, heads=2, in_dim=20)
    model = Flamingo(
        lm=copy.deepcopy(lm), resampler=resampler, media_token_id=new[0], xattn_heads=2, train_token_ids=new
    )
    input_ids = interleaved(tok, ids, ["a cat face", "yes"])
    media = torch.randn(1, 2, 5, 20)
    with torch.no_grad():
        want = lm(input_ids=input_ids).logits
    out = model(input_ids, media=media, labels=input_ids)
    torch.testing.assert_close(out.logits, want, rtol=1e-5, atol=1e-5)  # rows copied: the LM at init
    assert out.loss is not None
    out.loss.backward()
    assert model.new_token_in.grad is not None and model.new_token_in.grad.abs().sum() > 0
    assert model.new_token_out.grad is not None and model.new_token_out.grad[1].abs().sum() > 0
    assert model.lm.get_input_embeddings().weight.grad is None  # the LM's own table stays frozen
    with torch.no_grad():
        model.new_token_out[1] += 5.0  # <|endofchunk|> now scores differently: only through the new rows
        logits = model(input_ids, media=media).logits
    assert not torch.allclose(logits[..., new[1]], want[..., new[1]])
    torch.testing.assert_close(logits[..., : new[0]], want[..., : new[0]], rtol=1e-5, atol=1e-5)
    a = model.generate(input_ids[:, :3], media=media[:, :1], max_new_tokens=4, use_cache=True)
    b = model.generate(input_ids[:, :3], media=media[:, :1], max_new_tokens=4, use_cache=False)
    assert torch.equal(a, b)


def test_train_lm_option_trains_the_lm_and_still_starts_as_the_lm(tiny_lm):
    lm, tok, ids = tiny_lm
    reference = copy.deepcopy(lm)
    torch.manual_seed(0)
    resampler = PerceiverResampler(dim=24, depth=1, n_latents=3, dim_head=8, heads=2, in_dim=20)
    model = Flamingo(
        lm=copy.deepcopy(lm),
        resampler=resampler,
        media_token_id=ids["<image>"],
        xattn_heads=2,
        xattn_dim_head=8,
        train_lm=True,
    )
    input_ids = interleaved(tok, ids, ["a cat face", "yes"])
    media = torch.randn(1, 2, 5, 20)
    with torch.no_grad():
        assert torch.equal(model.eval()(input_ids, media=media).logits, reference(input_ids=input_ids).logits)
    model.train()
    assert model.lm.training
    out = model(input_ids, media=media, labels=input_ids.masked_fill(input_ids == ids["<image>"], -100))
    assert out.loss is not None
    out.loss.backward()
    lm_grads = [p.grad for n, p in model.named_parameters() if n.startswith("lm.") and ".xattn." not in n]
    assert lm_grads and all(g is not None for g in lm_grads)
