"""Loading trained models: ``xmodal.load_checkpoint(path)`` → (model, preprocess)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from xmodal.config import config_from_dict
from xmodal.errors import CheckpointError, ConfigError
from xmodal.models.clip import CLIP
from xmodal.models.factory import build_model, image_preprocess
from xmodal.train.checkpoint import MODEL_FILE, load_model_weights, read_state


def load_checkpoint(path: str | Path) -> tuple[CLIP, Any]:
    """Build the model recorded in a checkpoint folder and load its weights strictly.

    Args:
        path: a folder with ``model.safetensors`` + ``state.json`` (``<run>/model`` or
            ``<run>/checkpoints/last``), or the ``model.safetensors`` file inside one.

    Returns:
        (model in eval mode, preprocess). A pickle, a corrupt file, or weights that do not match
        the recorded config raise :class:`~xmodal.errors.CheckpointError`.

    A Hugging Face CLIP/SigLIP folder (``config.json``, no ``state.json``), or a name ``hf:PATH``,
    ``hf-clip:PATH``, ``hf-siglip:PATH``, loads through :func:`~xmodal.models.factory.create_model`.
    """
    from xmodal.models.factory import create_model
    from xmodal.models.hf_clip import hf_folder_name

    hf_name = hf_folder_name(path)
    if hf_name is not None:
        return create_model(hf_name)
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint {p} does not exist")
    folder = p if p.is_dir() else p.parent
    weights = p if p.is_file() else p / MODEL_FILE
    if p.is_file() and p.suffix != ".safetensors":
        from xmodal.train.checkpoint import read_safetensors

        read_safetensors(p)  # refuses pickles with a clear message, or reports the corrupt file
    state = read_state(folder)
    if "config" not in state:
        raise CheckpointError(f"{folder / 'state.json'} has no 'config' entry")
    try:
        cfg = config_from_dict(state["config"])
    except ConfigError as e:
        raise CheckpointError(f"{folder / 'state.json'}: {e}") from None
    model = build_model(cfg.model)
    load_model_weights(model, weights)
    model.config = cfg.model  # type: ignore[assignment]
    return model.eval(), image_preprocess(model, cfg.model.image_size)


def load_model(spec: str | Path) -> tuple[CLIP, Any]:
    """A model for evaluation from a preset name, a YAML recipe or a checkpoint folder / .safetensors file.

    A folder or a ``.safetensors`` file is loaded with :func:`load_checkpoint`; anything else goes to
    :func:`~xmodal.models.factory.create_model` (a preset's untrained heads, or a recipe's model), its
    fresh parameters drawn from seed 0 (so evaluating a preset repeats exactly) without touching the
    caller's random state.

    Returns:
        (model in eval mode, preprocess).
    """
    from xmodal.models.factory import create_model

    p = Path(spec)
    if p.is_dir() or p.suffix == ".safetensors":
        return load_checkpoint(p)
    state = torch.random.get_rng_state()
    torch.manual_seed(0)  # a preset's untrained parts start the same in every run
    try:
        return create_model(str(spec))
    finally:
        torch.random.set_rng_state(state)
