"""Tests for xmodal.models.blip2: stage-1 losses decrease, hard negatives, stage 2 into a frozen LM."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from xmodal.fusion.qformer import QFormer
from xmodal.lm import load_causal_lm
from xmodal.lm.tiny import save_tiny_lm
from xmodal.models.blip2 import Blip2LM, Blip2Stage1, sample_hard_negatives

CLS, DEC, PAD = 1, 2, 0


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one intra-op thread is fastest and immune to a busy machine's contention."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def stage1() -> Blip2Stage1:
    torch.manual_seed(0)
    qf = QFormer(
        num_queries=8,
        dim=64,
        depth=2,
        num_heads=4,
        encoder_dim=12,
        vocab_size=40,
        max_text_len=16,
        dropout=0.0,
        cross_attention_every=1,
    )
    return Blip2Stage1(qformer=qf, embed_dim=16, dec_token_id=DEC, pad_token_id=PAD)


def batch(n: int = 6, seed: int = 0):
    """n distinct random 'images' (7 tokens × 12) with random captions of varying length, [CLS] first."""
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(n, 7, 12, generator=g)
    ids = torch.randint(3, 40, (n, 8), generator=g)
    ids[:, 0] = CLS
    mask = torch.ones(n, 8, dtype=torch.long)
    for i in range(n):
        mask[i, 5 + i % 3 :] = 0
    return features, ids.masked_fill(mask == 0, PAD), mask


def test_hard_negatives_never_pick_the_positive_and_follow_the_similarity():
    sim = torch.tensor([[5.0, 4.0, -9.0], [4.0, 5.0, -9.0], [0.0, 3.0, 5.0]])
    g = torch.Generator().manual_seed(0)
    picks = torch.stack([sample_hard_negatives(sim, g) for _ in range(300)])  # (300, 3)
    assert (picks != torch.arange(3)).all()
    assert (picks[:, 0] == 1).float().mean() > 0.99  # the most similar negative dominates
    assert 0.8 < (picks[:, 2] == 1).float().mean() < 0.99  # softmax weights: 3 vs 0 → ~0.95


def test_pairs_sharing_an_image_are_never_hard_negatives_of_each_other():
    ids = torch.tensor([0, 0, 1, 2])  # pairs 0 and 1 show the same image under two captions
    same = ids[:, None] == ids[None, :]
    sim = torch.zeros(4, 4)
    sim[0, 1] = sim[1, 0] = 9.0  # the duplicate looks by far the most similar
    g = torch.Generator().manual_seed(0)
    picks = torch.stack([sample_hard_negatives(sim, g, same) for _ in range(200)])
    assert not same[torch.arange(4), picks].any()
    with pytest.raises(ValueError, match="at least 2 distinct images"):
        sample_hard_negatives(sim, g, torch.ones(4, 4, dtype=torch.bool))


def test_image_ids_make_duplicates_itc_positives():
    model = stage1().eval()
    features, ids, mask = batch(4)
    plain = model(ids, mask, features=features, seed=0)
    distinct = model(ids, mask, features=features, seed=0, image_ids=torch.arange(4))
    for k in ("itc", "itm", "itg"):
        torch.testing.assert_close(getattr(plain, k), getattr(distinct, k))
    features[1] = features[0]  # pair 1 now shows image 0
    dup = model(ids, mask, features=features, seed=0, image_ids=torch.tensor([0, 0, 1, 2]))
    target = torch.tensor([[0.5, 0.5, 0, 0], [0.5, 0.5, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    sim = dup.sim_i2t
    want = -((sim.log_softmax(1) * target).sum(1).mean() + (sim.T.log_softmax(1) * target).sum(1).mean()) / 2
    torch.testing.assert_close(dup.itc, want)


def test_itc_itm_and_itg_each_decrease_on_a_fixed_batch():
    model = stage1().train()
    features, ids, mask = batch(4)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    history = []
    for step in range(80):
        out = model(ids, mask, features=features, seed=step)
        history.append({k: getattr(out, k).item() for k in ("itc", "itm", "itg")})
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    first = {k: sum(h[k] for h in history[:3]) / 3 for k in history[0]}
    last = {k: sum(h[k] for h in history[-3:]) / 3 for k in history[0]}
    assert history[0]["itc"] == pytest.approx(math.log(4), rel=0.05)  # chance over 4 pairs
    assert history[0]["itg"] == pytest.approx(math.log(40), rel=0.05)  # chance over the vocabulary
    for k in ("itc", "itm", "itg"):
        assert last[k] < 0.5 * first[k], (k, first[k], last[k])
    # ITM beats the class prior (1 positive : 2 negatives), i.e. it tells matched pairs from hard negatives
    prior = -(math.log(1 / 3) / 3 + 2 * math.log(2 / 3) / 3)
    assert last["itm"] < 0.8 * prior


def test_stage1_gradients_reach_every_part():
    model = stage1().train()
    features, ids, mask = batch(4)
    model(ids, mask, features=features).loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    with pytest.raises(ValueError, match="at least 2 pairs"):
        model(ids[:1], mask[:1], features=features[:1])


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def tiny_lm(request, tmp_path_factory):
    lm, tok = load_causal_lm(save_tiny_lm(tmp_path_factory.mktemp(request.param), request.param))
    return lm, tok


def test_stage2_trains_qformer_and_projection_only_and_learns(tiny_lm):
    lm, tok = tiny_lm
    reference = copy.deepcopy(lm)
    model = Blip2LM(stage1=stage1(), lm=copy.deepcopy(lm)).train()
    assert not model.lm.training
    features = batch(2)[0]
    ids = torch.tensor([tok("a cat face")["input_ids"], tok("a red apple")["input_ids"]])
    labels = ids.clone()
    out = model(ids, labels=labels, features=features)
    assert out.logits.shape == (2, 8 + ids.shape[1], lm.config.vocab_size)  # 8 query tokens first
    out.loss.backward()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {n.split(".")[0] for n in trainable} == {"stage1", "proj"}
    assert all(n.startswith(("stage1.qformer.", "stage1.ln_vision.", "proj.")) for n in trainable)
    # the queries-only stage 2 leaves the Q-Former's text path unused: frozen, and every trainable part learns
    assert not any("word_embeddings" in n or "ffn_text" in n for n in trainable)
    for n, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.abs().sum() > 0, n
    assert all(p.grad is None for n, p in model.named_parameters() if n.startswith("lm."))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    assert out.loss is not None
    first = out.loss.item()
    for _ in range(15):
        loss = model(ids, labels=labels, features=features).loss
        assert loss is not None
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first - 0.1  # a frozen random LM responds weakly to its prefix (measured: -0.25)
    for (n, a), b in zip(model.lm.state_dict().items(), reference.state_dict().values(), strict=True):
        assert torch.equal(a, b), n  # the LM is untouched
    gen = model.eval().generate(ids[:, :1], features=features, max_new_tokens=4)
    assert gen.shape == (2, 4)


def test_registered_for_the_registry_wide_model_test():
    import xmodal.models.fusion_cases  # noqa: F401  (registers the tiny cases)
    from xmodal.registry import VL_MODELS

    assert {"blip2-stage1-tiny", "blip2-tiny-gpt2"} <= set(VL_MODELS.names())


def test_set_stage_switches_what_trains(tiny_lm):
    lm, _ = tiny_lm
    model = Blip2LM(stage1=stage1(), lm=copy.deepcopy(lm))
    model.set_stage(1)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in model.named_parameters() if n.startswith("stage1.")}
    model.set_stage(2)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "proj.weight" in trainable and "stage1.qformer.query_tokens" in trainable
    assert not any(n.startswith("lm.") or "word_embeddings" in n or "itm_head" in n for n in trainable)
    with pytest.raises(ValueError, match="stage must be 1 or 2"):
        model.set_stage(3)


def test_train_lm_unfreezes_the_lm_in_stage_2_only(tiny_lm):
    lm, tok = tiny_lm
    model = Blip2LM(stage1=stage1(), lm=copy.deepcopy(lm), train_lm=True)
    model.set_stage(1)
    assert not any(p.requires_grad for p in model.lm.parameters())
    model.set_stage(2)
    assert all(p.requires_grad for p in model.lm.parameters())
    assert model.train().lm.training and not model.eval().lm.training
    before = copy.deepcopy(model.lm.state_dict())
    ids = torch.tensor([tok("a cat face")["input_ids"]])
    loss = model.train()(ids, labels=ids, features=batch(1)[0]).loss
    assert loss is not None
    loss.backward()
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1).step()
    changed = [n for n, v in model.lm.state_dict().items() if not torch.equal(v, before[n])]
    assert changed and any("wte" in n or "embed_tokens" in n for n in changed)


def test_beam_search_scores_its_captions_exactly_and_beam_one_is_greedy(tiny_lm):
    lm, tok = tiny_lm
    torch.manual_seed(1)
    model = Blip2LM(stage1=stage1(), lm=copy.deepcopy(lm)).eval()
    features = batch(3)[0]
    start = torch.full((3, 1), tok.eos_token_id)
    eos = 5  # a frequent id of the random LM, so that some beams finish before max_new_tokens
    greedy = model.generate(start, features=features, max_new_tokens=5, eos_token_id=eos, pad_token_id=-1)
    one = model.generate(
        start, features=features, max_new_tokens=5, eos_token_id=eos, pad_token_id=-1, beam_size=1
    )
    assert torch.equal(one, greedy)
    found = model.beam_search(start, model.prefix(features=features), eos=eos, max_new_tokens=5, beam_size=4)
    for b in range(3):
        seq = found.tokens[b] + ([eos] if found.finished[b] else [])
        ids = torch.tensor([[int(start[b, 0]), *seq]])
        with torch.no_grad():
            logp = model(ids, features=features[b : b + 1]).logits[0, 8:-1].log_softmax(-1)  # 8 queries
        assert found.scores[b] == pytest.approx(float(logp.gather(1, ids[0, 1:, None]).sum()), abs=1e-4)
    padded = model.generate(
        start, features=features, max_new_tokens=5, eos_token_id=eos, pad_token_id=-1, beam_size=4
    )
    for b in range(3):
        assert [t for t in padded[b].tolist() if t != -1] == found.tokens[b]


def test_feature_dropout_masks_the_normalised_features_in_training_only():
    s = stage1()
    s.feature_drop.p = 0.5
    features = batch()[0]
    normed = s.ln_vision(features)
    s.eval()
    torch.testing.assert_close(s.image_features(None, features), normed, rtol=0, atol=0)
    s.train()
    torch.manual_seed(3)
    dropped = s.image_features(None, features)
    zero = dropped == 0
    assert 0.3 < zero.float().mean().item() < 0.7  # about half the entries dropped, the rest scaled by 2
    torch.testing.assert_close(dropped[~zero], 2 * normed[~zero])
    plain = Blip2Stage1(qformer=s.qformer, embed_dim=16, dec_token_id=DEC, pad_token_id=PAD)
    assert plain.feature_drop.p == 0.0  # BLIP-2's default: none


def test_left_padded_prompts_of_different_lengths_decode_as_each_alone(tiny_lm):
    lm, _ = tiny_lm
    torch.manual_seed(2)
    model = Blip2LM(stage1=stage1(), lm=copy.deepcopy(lm)).eval()
    features = batch(3)[0]
    prompts = [[7, 8, 9, 10], [11], [12, 13]]
    ids = torch.full((3, 4), PAD)
    mask = torch.zeros(3, 4, dtype=torch.long)
    for b, p in enumerate(prompts):
        ids[b, 4 - len(p) :], mask[b, 4 - len(p) :] = torch.tensor(p), 1
    out = model.generate(ids, features=features, attention_mask=mask, max_new_tokens=4, pad_token_id=-1)
    for b, p in enumerate(prompts):
        alone = model.generate(
            torch.tensor([p]), features=features[b : b + 1], max_new_tokens=4, pad_token_id=-1
        )
        assert out[b].tolist() == alone[0].tolist()
    with pytest.raises(ValueError, match="one length"):
        model.generate(ids, features=features, attention_mask=mask, eos_token_id=5, beam_size=2)
