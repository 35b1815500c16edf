import logging

import pytest
import torch

from xmodal.encoders.hf_text import minilm_path
from xmodal.encoders.tokenizer import ByteTokenizer, HFTokenizer
from xmodal.errors import XmodalError


def test_byte_tokenizer_pads_to_longest() -> None:
    tok = ByteTokenizer(max_length=16)
    out = tok(["hi", "", "héllo"])
    ids, mask = out["input_ids"], out["attention_mask"]
    assert ids.dtype == mask.dtype == torch.long
    assert ids.shape == (3, 8)  # BOS + 6 bytes ("é" is 2) + EOS
    assert ids[0].tolist() == [1, 3 + ord("h"), 3 + ord("i"), 2, 0, 0, 0, 0]
    assert ids[1].tolist()[:3] == [1, 2, 0]
    assert mask.sum(dim=1).tolist() == [4, 2, 8]
    assert tok.vocab_size == 259 and tok.pad_id == 0
    assert [tok.decode(row) for row in ids] == ["hi", "", "héllo"]
    assert tok.num_truncated == 0 and tok.num_texts == 3


def test_byte_tokenizer_counts_truncation(caplog: pytest.LogCaptureFixture) -> None:
    tok = ByteTokenizer(max_length=6)
    with caplog.at_level(logging.WARNING):
        out = tok(["abcd", "abcde", "abcdefgh"])
    assert out["input_ids"].shape == (3, 6)
    assert out["input_ids"][2].tolist() == [1, *(3 + b for b in b"abcd"), 2]  # EOS kept
    assert tok.num_truncated == 2
    assert "truncated 2 of 3" in caplog.text
    tok(["a" * 10])
    assert (tok.num_truncated, tok.num_texts) == (3, 4)


def test_tokenizer_rejects_a_bare_string_and_handles_empty_batches() -> None:
    tok = ByteTokenizer()
    with pytest.raises(TypeError, match="list of texts"):
        tok("hello")  # type: ignore[arg-type]
    assert tok([])["input_ids"].shape == (0, 0)


def test_hf_tokenizer_matches_transformers() -> None:
    from transformers import AutoTokenizer

    texts = ["A photo of a CAT.", "a kitten", "Ünïcödé and emoji 🙂 text", "x " * 40]
    tok = HFTokenizer(minilm_path(), max_length=16)
    ref = AutoTokenizer.from_pretrained(str(minilm_path()))(
        texts, padding=True, truncation=True, max_length=16, return_tensors="pt"
    )
    out = tok(texts)
    assert torch.equal(out["input_ids"], ref["input_ids"])
    assert torch.equal(out["attention_mask"], ref["attention_mask"])
    assert out["input_ids"][3, -1].item() == 102  # [SEP] kept after truncation
    assert tok.num_truncated == 1 and tok.vocab_size == 30522 and tok.pad_id == 0
    assert tok.decode(out["input_ids"][0]) == "a photo of a cat."


def test_hf_tokenizer_from_a_json_file(tmp_path) -> None:
    tok = HFTokenizer(minilm_path() / "tokenizer.json", max_length=8)
    assert tok(["a kitten"])["input_ids"].tolist() == [[101, 1037, 18401, 102]]
    with pytest.raises(XmodalError, match="tokenizer not found"):
        HFTokenizer(tmp_path / "nope.json", max_length=8)


def test_hf_tokenizer_from_a_vocab_txt_folder(tmp_path) -> None:
    for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        (tmp_path / name).write_bytes((minilm_path() / name).read_bytes())
    texts = ["A photo of a CAT.", "a kitten"]
    converted = HFTokenizer(tmp_path, max_length=16)(texts)
    reference = HFTokenizer(minilm_path(), max_length=16)(texts)
    assert torch.equal(converted["input_ids"], reference["input_ids"])


def _word_level(tmp_path, vocab: dict[str, int]):
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    return path


def test_hf_tokenizer_pad_id_discovery(tmp_path) -> None:
    path = _word_level(tmp_path, {"<unk>": 0, "a": 1, "cat": 2, "[PAD]": 3, "<sep>": 4})
    tok = HFTokenizer(path, max_length=4)
    assert tok.pad_id == 3
    assert tok(["a cat", "cat"])["input_ids"].tolist() == [[1, 2], [2, 3]]
    assert HFTokenizer(path, max_length=4, pad_token="<sep>").pad_id == 4
    (tmp_path / "tokenizer_config.json").write_text('{"pad_token": {"content": "a"}}')
    assert HFTokenizer(path, max_length=4).pad_id == 1


def test_hf_tokenizer_without_a_pad_token(tmp_path) -> None:
    path = _word_level(tmp_path, {"<unk>": 0, "a": 1})
    with pytest.raises(XmodalError, match="no padding token"):
        HFTokenizer(path, max_length=4)
