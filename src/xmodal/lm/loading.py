"""Loading any local causal LM folder offline, and adding the multimodal special tokens.

xmodal connects vision to *any* ``transformers`` ``AutoModelForCausalLM`` saved to disk (GPT-2, Llama,
...): LLaVA splices projected image tokens at ``<image>`` (Liu et al. 2023,
https://arxiv.org/abs/2304.08485), Flamingo marks images and chunk ends with ``<image>`` and
``<|endofchunk|>`` (Alayrac et al. 2022, https://arxiv.org/abs/2204.14198). Nothing is downloaded: the
folder must hold safetensors weights; a pickle-only folder (``pytorch_model.bin``) is refused.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import nn

from xmodal.errors import CheckpointError

IMAGE_TOKEN = "<image>"
CHUNK_TOKEN = "<|endofchunk|>"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def _quiet_transformers() -> None:
    """No progress bars or advisory warnings from ``transformers`` while loading."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def check_lm_folder(path: str | Path) -> Path:
    """A local model folder with ``config.json`` and safetensors weights, or a one-line error.

    Raises:
        CheckpointError: missing folder or config, pickle-only weights, or no weights at all.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise CheckpointError(f"language model folder {folder} does not exist")
    if not (folder / "config.json").is_file():
        raise CheckpointError(f"{folder} is not a transformers model folder (no config.json)")
    if any(folder.glob("*.safetensors")):
        return folder
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise CheckpointError(
            f"{folder} holds only pickle weights ({', '.join(pickles)}); xmodal loads safetensors only "
            "(convert with model.save_pretrained(dir, safe_serialization=True) in a trusted environment)"
        )
    raise CheckpointError(f"{folder} has no model weights (*.safetensors)")


def load_causal_lm(path: str | Path, *, dtype: Any = None) -> tuple[nn.Module, Any]:
    """Load ``AutoModelForCausalLM`` + ``AutoTokenizer`` from a local folder, offline.

    Args:
        path: a folder written by ``save_pretrained`` (config.json, *.safetensors, tokenizer files).
        dtype: optional torch dtype for the weights (default: as saved).

    Returns:
        (model in eval mode, tokenizer). A tokenizer without a pad token gets its eos token as pad.

    Raises:
        CheckpointError: see :func:`check_lm_folder`, or a folder transformers cannot read.
    """
    folder = check_lm_folder(path)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    _quiet_transformers()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot load the tokenizer in {folder}: {str(e).splitlines()[0]}") from None
    kwargs: dict[str, Any] = {"local_files_only": True, "use_safetensors": True}
    if dtype is not None:
        kwargs["dtype"] = dtype
    try:
        model = AutoModelForCausalLM.from_pretrained(str(folder), **kwargs)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot load the model in {folder}: {str(e).splitlines()[0]}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.eval(), tokenizer


def add_multimodal_tokens(
    tokenizer: Any, model: nn.Module | None = None, tokens: tuple[str, ...] = (IMAGE_TOKEN, CHUNK_TOKEN)
) -> dict[str, int]:
    """Add ``<image>`` and ``<|endofchunk|>`` as atomic special tokens; resize the model's embeddings.

    Idempotent: tokens already in the vocabulary are kept. New embedding rows are initialised by
    ``transformers`` from the old rows' mean and covariance (Hewitt 2021).

    Returns:
        {token: id}.
    """
    from tokenizers import AddedToken

    vocab = tokenizer.get_vocab()
    new = [AddedToken(t, special=True, normalized=False) for t in tokens if t not in vocab]
    if new:
        tokenizer.add_tokens(new, special_tokens=True)
    if model is not None and model.get_input_embeddings().num_embeddings < len(tokenizer):  # type: ignore[operator]
        model.resize_token_embeddings(len(tokenizer))  # type: ignore[operator]
    return {t: int(tokenizer.convert_tokens_to_ids(t)) for t in tokens}


def context_length(model: nn.Module) -> int | None:
    """The LM's maximum sequence length from its config (``max_position_embeddings`` / ``n_positions``)."""
    cfg = getattr(model, "config", None)
    for key in ("max_position_embeddings", "n_positions", "n_ctx", "max_sequence_length"):
        value = getattr(cfg, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def set_dropout(module: Any, p: float) -> int:
    """Set every ``nn.Dropout`` inside ``module`` to probability ``p``; returns how many were changed.

    A small LM fine-tuned on few captions memorises them; more dropout than it was pretrained with is
    the usual remedy. (Dropout applied functionally from a config value, as in Llama's attention, is
    not reached.)
    """
    from torch import nn

    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {p}")
    n = 0
    for m in module.modules():
        if isinstance(m, nn.Dropout):
            m.p = p
            n += 1
    return n


def set_training_regularisation(model: Any, label_smoothing: float, lm_dropout: float | None) -> None:
    """A recipe's ``model.label_smoothing`` / ``model.lm_dropout`` onto a model with an ``lm`` and a
    ``label_smoothing`` attribute (LLaVA, Flamingo, BLIP-2 stage 2); ``lm_dropout`` None keeps the LM's."""
    model.label_smoothing = label_smoothing
    if lm_dropout is not None:
        set_dropout(model.lm, lm_dropout)
