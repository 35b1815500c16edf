import pytest
import torch

from xmodal.encoders.base import masked_mean
from xmodal.encoders.text_transformer import TextTransformer, text_transformer
from xmodal.encoders.tokenizer import ByteTokenizer
from xmodal.registry import TEXT_ENCODERS


def test_forward_from_texts() -> None:
    m = text_transformer(max_length=32).eval()
    assert isinstance(m.tokenizer, ByteTokenizer) and m.tokenizer.max_length == 32
    batch = m.tokenizer(["a cat", "a much longer caption about a dog"])
    out = m(**batch)
    assert out.tokens.shape == (2, 32, 64) and out.pooled.shape == (2, 64)
    assert out.mask is not None and out.mask.dtype == torch.bool
    assert out.mask.sum(dim=1).tolist() == [7, 32]  # BOS + 5 bytes + EOS; 33 bytes cut to 30
    assert m.tokenizer.num_truncated == 1
    torch.testing.assert_close(out.pooled, masked_mean(out.tokens, out.mask))


def test_padding_does_not_change_the_embedding() -> None:
    m = text_transformer().eval()
    alone = m(**m.tokenizer(["a cat"])).pooled
    padded = m(**m.tokenizer(["a cat", "a caption that is a good deal longer"])).pooled[:1]
    torch.testing.assert_close(alone, padded, atol=1e-5, rtol=1e-5)
    # the mask defaults to ids != pad_id
    ids = m.tokenizer(["a cat", "a longer caption"])["input_ids"]
    torch.testing.assert_close(m(ids).pooled, m(**m.tokenizer(["a cat", "a longer caption"])).pooled)


def test_blocks_cover_all_parameters_and_gradients_flow() -> None:
    m = TextTransformer(dim=32, depth=3, num_heads=4, max_length=16)
    assert len(m.blocks()) == 4 and m.blocks()[0] is m.embed and m.output_only_modules() == [m.norm]
    covered = {id(p) for mod in m.blocks() + m.output_only_modules() for p in mod.parameters()}
    assert covered == {id(p) for p in m.parameters()}
    batch = m.tokenizer(["hello", "world!"])
    m(**batch).pooled.square().sum().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    # only the embeddings of ids that occurred receive gradient
    used = batch["input_ids"].unique()
    grad_rows = m.embed.token_embed.weight.grad.abs().sum(dim=1).nonzero().flatten()
    assert set(grad_rows.tolist()) <= set(used.tolist())


def test_argument_checks() -> None:
    with pytest.raises(ValueError, match="smaller than the tokenizer"):
        TextTransformer(vocab_size=100, dim=16, depth=1, num_heads=2)
    m = TextTransformer(dim=16, depth=1, num_heads=2, max_length=8)
    with pytest.raises(ValueError, match="exceeds max_length 8"):
        m(torch.ones(1, 9, dtype=torch.long))


def test_custom_tokenizer_sets_vocab_and_pad() -> None:
    tok = ByteTokenizer(max_length=12)
    m = TextTransformer(dim=16, depth=1, num_heads=2, tokenizer=tok, vocab_size=300)
    assert m.tokenizer is tok and m.max_length == 12 and m.pad_id == 0
    assert m.embed.token_embed.num_embeddings == 300


def test_registered_and_golden() -> None:
    assert TEXT_ENCODERS.get("text_transformer") is text_transformer
    torch.manual_seed(0)
    m = text_transformer()
    out = m(**m.tokenizer(["a photo of a cat"]))
    torch.testing.assert_close(
        out.pooled[0, :4], torch.tensor([-0.07476925, 0.30160978, 0.47062656, -0.84777474]), atol=1e-5, rtol=0
    )
