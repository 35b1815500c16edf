"""Tokenizers: texts → ``input_ids`` / ``attention_mask`` tensors, padded to the longest text.

Every tokenizer truncates at ``max_length`` and counts the texts it truncated in ``num_truncated``
(and logs a warning the first time), so truncation is never silent.
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from pathlib import Path

import torch
from tokenizers import Tokenizer as RustTokenizer
from torch import Tensor

from xmodal.errors import XmodalError

log = logging.getLogger(__name__)


class Tokenizer(ABC):
    """Base class. Subclasses implement ``_encode`` (ids of each text, specials included, truncated).

    Attributes:
        max_length: the longest sequence returned, special tokens included.
        pad_id: the id that fills padded positions.
        num_texts: texts tokenised so far.
        num_truncated: how many of those were cut at ``max_length``.
    """

    max_length: int
    pad_id: int

    def __init__(self, *, max_length: int) -> None:
        if max_length < 2:
            raise ValueError(f"max_length must be at least 2, got {max_length}")
        self.max_length = max_length
        self.num_texts = 0
        self.num_truncated = 0

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of ids (specials included): the embedding table size."""

    @abstractmethod
    def _encode(self, texts: list[str]) -> tuple[list[list[int]], list[bool]]:
        """Ids of each text (at most ``max_length``) and whether it was truncated."""

    def __call__(self, texts: list[str]) -> dict[str, Tensor]:
        """Tokenise a batch.

        Returns:
            ``input_ids`` (B, L) long and ``attention_mask`` (B, L) long (1 = real token), with L the
            longest tokenised text in the batch (at most ``max_length``).
        """
        if isinstance(texts, str):
            raise TypeError("pass a list of texts, not a single string")
        ids, truncated = self._encode(list(texts))
        n_cut = sum(truncated)
        if n_cut and self.num_truncated == 0:
            log.warning(
                "%s truncated %d of %d texts to %d tokens",
                type(self).__name__,
                n_cut,
                len(ids),
                self.max_length,
            )
        self.num_texts += len(ids)
        self.num_truncated += n_cut
        length = max((len(x) for x in ids), default=0)
        input_ids = torch.full((len(ids), length), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(ids), length), dtype=torch.long)
        for i, x in enumerate(ids):
            input_ids[i, : len(x)] = torch.tensor(x, dtype=torch.long)
            attention_mask[i, : len(x)] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask}


class ByteTokenizer(Tokenizer):
    """UTF-8 bytes as tokens, wrapped in BOS ... EOS; needs no vocabulary file.

    Ids: 0 PAD, 1 BOS, 2 EOS, 3 + b for byte b (vocabulary 259). Truncation keeps BOS, the first
    ``max_length - 2`` bytes and EOS (a multi-byte character may be cut; ``decode`` replaces it).
    """

    PAD, BOS, EOS, OFFSET = 0, 1, 2, 3

    def __init__(self, *, max_length: int = 64) -> None:
        super().__init__(max_length=max_length)
        self.pad_id = self.PAD

    @property
    def vocab_size(self) -> int:
        return self.OFFSET + 256

    def _encode(self, texts: list[str]) -> tuple[list[list[int]], list[bool]]:
        room = self.max_length - 2
        ids, truncated = [], []
        for text in texts:
            body = [self.OFFSET + b for b in text.encode("utf-8")]
            truncated.append(len(body) > room)
            ids.append([self.BOS, *body[:room], self.EOS])
        return ids, truncated

    def decode(self, ids: list[int] | Tensor) -> str:
        """The text of one id sequence (specials and padding dropped)."""
        values = ids.tolist() if isinstance(ids, Tensor) else ids
        return bytes(i - self.OFFSET for i in values if i >= self.OFFSET).decode("utf-8", errors="replace")


class HFTokenizer(Tokenizer):
    """A Hugging Face fast tokenizer loaded from local files (works offline).

    Args:
        path: a ``tokenizer.json`` file, or a folder holding one (or files ``transformers.AutoTokenizer``
            can convert, such as ``vocab.txt``).
        max_length: truncation length, special tokens included (the final [SEP]/EOS is kept).
        pad_token: the padding token; by default the tokenizer's own (its padding config,
            ``tokenizer_config.json``'s ``pad_token``, or one of [PAD], <pad>, <|endoftext|>).
    """

    def __init__(self, path: str | Path, *, max_length: int, pad_token: str | None = None) -> None:
        super().__init__(max_length=max_length)
        path = Path(path)
        if not path.exists():
            raise XmodalError(f"tokenizer not found: {path}")
        folder = path if path.is_dir() else path.parent
        if path.is_file():
            tok = RustTokenizer.from_file(str(path))
        elif (path / "tokenizer.json").is_file():
            tok = RustTokenizer.from_file(str(path / "tokenizer.json"))
        else:
            from transformers import AutoTokenizer

            try:
                tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True).backend_tokenizer
            except (OSError, ValueError, AttributeError) as e:
                raise XmodalError(f"cannot load a tokenizer from {path}: {str(e).splitlines()[0]}") from None
        self.pad_id = _find_pad_id(tok, folder, pad_token, path)
        tok.no_padding()
        tok.enable_truncation(max_length=max_length)
        self._tok = tok
        self.path = path

    @property
    def vocab_size(self) -> int:
        return int(self._tok.get_vocab_size(with_added_tokens=True))

    def _encode(self, texts: list[str]) -> tuple[list[list[int]], list[bool]]:
        encodings = self._tok.encode_batch(texts)
        return [e.ids for e in encodings], [len(e.overflowing) > 0 for e in encodings]

    def decode(self, ids: list[int] | Tensor) -> str:
        """The text of one id sequence (special tokens dropped)."""
        values = ids.tolist() if isinstance(ids, Tensor) else ids
        return str(self._tok.decode(values, skip_special_tokens=True))


def _find_pad_id(tok: RustTokenizer, folder: Path, pad_token: str | None, path: Path) -> int:
    """The padding id: explicit token, the tokenizer's padding config, its config file, or a common name."""
    candidates: list[str] = []
    if pad_token is not None:
        candidates = [pad_token]
    else:
        padding = tok.padding
        if padding is not None:
            return int(padding["pad_id"])
        config = folder / "tokenizer_config.json"
        if config.is_file():
            value = json.loads(config.read_text()).get("pad_token")
            if isinstance(value, dict):  # {"content": "[PAD]", ...}
                value = value.get("content")
            if isinstance(value, str):
                candidates.append(value)
        candidates += ["[PAD]", "<pad>", "<|endoftext|>"]
    for token in candidates:
        idx = tok.token_to_id(token)
        if idx is not None:
            return int(idx)
    raise XmodalError(f"tokenizer {path} has no padding token among {candidates}; pass pad_token=")
