"""Tests for xmodal.fusion.qformer: the three self-attention masks, information flow, fused vs reference."""

from __future__ import annotations

import pytest
import torch

from xmodal.fusion.qformer import QFormer, qformer_self_mask


def tiny(**kw) -> QFormer:
    torch.manual_seed(0)
    args = dict(
        num_queries=3,
        dim=16,
        depth=2,
        num_heads=2,
        encoder_dim=12,
        vocab_size=30,
        max_text_len=16,
        dropout=0.0,
    )
    return QFormer(**(args | kw)).eval()


def test_masks_on_a_hand_built_example():
    # 2 queries, 3 text tokens, the last one padding
    text_mask = torch.tensor([[1, 1, 0]])
    T, F = True, False
    uni = qformer_self_mask(2, text_mask, 3, "unimodal")[0, 0]
    assert uni.tolist() == [[T, T, F, F, F]] * 2 + [[F, F, T, T, F]] * 3
    bi = qformer_self_mask(2, text_mask, 3, "bidirectional")[0, 0]
    assert bi.tolist() == [[T, T, T, T, F]] * 5
    causal = qformer_self_mask(2, text_mask, 3, "causal")[0, 0]
    assert causal.tolist() == [
        [T, T, F, F, F],
        [T, T, F, F, F],
        [T, T, T, F, F],
        [T, T, T, T, F],
        [T, T, T, T, F],  # the padded position's row: it attends to real keys only, output ignored
    ]
    with pytest.raises(ValueError, match="unknown Q-Former mask mode"):
        qformer_self_mask(2, None, 3, "sideways")  # type: ignore[arg-type]


def test_shapes_and_layers_with_cross_attention():
    qf = tiny(depth=4, cross_attention_every=2)
    assert [layer.cross_attn is not None for layer in qf.layers] == [True, False, True, False]
    image, ids = torch.randn(2, 7, 12), torch.randint(0, 30, (2, 5))
    q, t = qf(image=image, text_ids=ids, mode="bidirectional")
    assert q is not None and t is not None and q.shape == (2, 3, 16) and t.shape == (2, 5, 16)
    q, t = qf(image=image)
    assert t is None and q is not None and q.shape == (2, 3, 16)
    with pytest.raises(ValueError, match="needs an image, a text or both"):
        qf()


def test_information_flow_follows_the_mask():
    qf = tiny()
    image, other_image = torch.randn(1, 7, 12), torch.randn(1, 7, 12)
    ids = torch.randint(0, 30, (1, 5))
    later = ids.clone()
    later[0, 3:] = (ids[0, 3:] + 1) % 30
    # causal (ITG): text token i sees queries (hence the image) and text ≤ i; queries never see text
    q1, t1 = qf(image=image, text_ids=ids, mode="causal")
    q2, t2 = qf(image=image, text_ids=later, mode="causal")
    assert q1 is not None and q2 is not None and t1 is not None and t2 is not None
    assert torch.equal(q1, q2) and torch.allclose(t1[:, :3], t2[:, :3], atol=1e-6)
    assert not torch.allclose(t1[:, 3:], t2[:, 3:])
    _, t3 = qf(image=other_image, text_ids=ids, mode="causal")
    assert t3 is not None and not torch.allclose(t1, t3)
    # bidirectional (ITM): queries see the text
    qa, _ = qf(image=image, text_ids=ids, mode="bidirectional")
    qb, _ = qf(image=image, text_ids=later, mode="bidirectional")
    assert qa is not None and qb is not None and not torch.allclose(qa, qb)
    # text alone (ITC) equals text under the unimodal mask next to any image
    _, alone = qf(text_ids=ids)
    _, uni = qf(image=image, text_ids=ids, mode="unimodal")
    assert alone is not None and uni is not None
    torch.testing.assert_close(alone, uni)


def test_padding_keys_are_ignored():
    qf = tiny()
    image = torch.randn(1, 7, 12)
    ids = torch.randint(0, 30, (1, 4))
    padded = torch.cat([ids, torch.tensor([[7, 9]])], dim=1)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0]])
    q1, t1 = qf(image=image, text_ids=ids, mode="bidirectional")
    q2, t2 = qf(image=image, text_ids=padded, text_mask=mask, mode="bidirectional")
    assert q1 is not None and q2 is not None and t1 is not None and t2 is not None
    torch.testing.assert_close(q1, q2)
    torch.testing.assert_close(t1, t2[:, :4])
    image_mask = torch.tensor([[1, 1, 1, 1, 1, 1, 1, 0, 0]], dtype=torch.bool)
    q3, _ = qf(image=torch.cat([image, torch.randn(1, 2, 12) * 50], dim=1), image_mask=image_mask)
    q4, _ = qf(image=image)
    assert q3 is not None and q4 is not None
    torch.testing.assert_close(q3, q4)


@pytest.mark.parametrize("mode", ["unimodal", "bidirectional", "causal"])
def test_fused_attention_matches_the_reference_forward_and_backward(mode):
    fused, plain = tiny(), tiny(fused=False)
    plain.load_state_dict(fused.state_dict())
    image = torch.randn(2, 7, 12, dtype=torch.float64)
    ids, mask = torch.randint(0, 30, (2, 5)), torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    fused, plain = fused.double(), plain.double()
    outs = []
    for m in (fused, plain):
        q, t = m(image=image, text_ids=ids, text_mask=mask, mode=mode)
        assert q is not None and t is not None
        (q.square().sum() + (t * mask[..., None]).square().sum()).backward()
        outs.append((q, t, [p.grad for p in m.parameters()]))
    torch.testing.assert_close(outs[0][0], outs[1][0])
    torch.testing.assert_close(outs[0][1] * mask[..., None], outs[1][1] * mask[..., None])
    for g1, g2 in zip(outs[0][2], outs[1][2], strict=True):
        if g1 is None:
            assert g2 is None
        else:
            torch.testing.assert_close(g1, g2)


def test_query_path_matches_transformers_blip2_qformer():
    """The queries-only path (ITC's image side, stage 2) against ``transformers``' Blip2QFormerModel."""
    from transformers import Blip2QFormerConfig, Blip2QFormerModel

    ours = tiny(depth=3, cross_attention_every=2)
    cfg = Blip2QFormerConfig(
        hidden_size=16,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=64,
        encoder_hidden_size=12,
        cross_attention_frequency=2,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        use_qformer_text_input=False,
    )
    ref = Blip2QFormerModel(cfg).eval()
    mine = ours.state_dict()
    state = {"layernorm.weight": mine["embed_norm.weight"], "layernorm.bias": mine["embed_norm.bias"]}
    names = {
        "attention.attention": "self_attn",
        "attention.output.dense": "self_attn.out",
        "attention.output.LayerNorm": "self_norm",
        "crossattention.attention": "cross_attn",
        "crossattention.output.dense": "cross_attn.out",
        "crossattention.output.LayerNorm": "cross_norm",
        "intermediate_query.dense": "ffn_query.fc1",
        "output_query.dense": "ffn_query.fc2",
        "output_query.LayerNorm": "ffn_query.norm",
    }
    for key in ref.state_dict():
        if not key.startswith("encoder.layer."):
            continue
        i, rest = key.split(".", 3)[2:]
        for theirs, own in names.items():
            if rest.startswith(theirs + "."):
                state[key] = mine[f"layers.{i}.{own}{rest[len(theirs) :]}"]
    ref.load_state_dict(state)  # strict: every parameter mapped
    image = torch.randn(2, 7, 12)
    image_mask = torch.tensor([[1] * 7, [1] * 5 + [0] * 2])
    q, _ = ours(image=image, image_mask=image_mask)
    want = ref(
        query_embeds=ours.query_tokens.expand(2, -1, -1),
        encoder_hidden_states=image,
        encoder_attention_mask=image_mask,
    ).last_hidden_state
    assert q is not None
    torch.testing.assert_close(q, want, rtol=1e-5, atol=1e-5)
