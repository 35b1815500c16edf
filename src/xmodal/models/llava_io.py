"""Building, saving and loading LLaVA models (:mod:`xmodal.models.llava`) from any local causal LM.

A saved LLaVA folder is self-contained: ``model.safetensors`` (projector + LM, LoRA adapters included),
``state.json`` (the :class:`LlavaSpec` and whatever the caller records) and ``lm/`` (the LM's
``config.json`` and tokenizer with the multimodal tokens and chat template, no weights), so it loads
without the stage-0 cache or the original LM folder.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xmodal.errors import CheckpointError, ConfigError
from xmodal.fusion.projector import ProjectorConfig, build_projector
from xmodal.lm.chat import ensure_chat_template
from xmodal.lm.loading import IMAGE_TOKEN, _quiet_transformers, add_multimodal_tokens, context_length
from xmodal.models.llava import Llava, add_lora
from xmodal.registry import VL_MODELS
from xmodal.train.checkpoint import MODEL_FILE, STATE_FILE, load_model_weights, save_model_dir

LM_SUBDIR = "lm"


@dataclass
class LoraSettings:
    """LoRA adapters for stage 2 (Hu et al. 2021): off by default (full fine-tuning)."""

    enabled: bool = False
    rank: int = 8
    alpha: int = 16
    dropout: float = 0.0


@dataclass
class LlavaSpec:
    """What rebuilds a LLaVA model's structure: vision token width, projector, LoRA."""

    vision_dim: int = 1280
    projector: ProjectorConfig = field(default_factory=ProjectorConfig)
    lora: LoraSettings = field(default_factory=LoraSettings)


def build_llava(lm: Any, tokenizer: Any, spec: LlavaSpec) -> Llava:
    """A LLaVA model around a loaded LM (``<image>`` added, chat template ensured, projector built).

    LoRA adapters are added when ``spec.lora.enabled`` (stage 2 then trains adapters + projector).
    """
    ids = add_multimodal_tokens(tokenizer, lm)
    ensure_chat_template(tokenizer)
    width = lm.get_input_embeddings().embedding_dim
    projector = build_projector(spec.projector, in_dim=spec.vision_dim, out_dim=width)
    if spec.lora.enabled:
        if spec.lora.rank < 1:
            raise ConfigError(f"lora.rank must be >= 1, got {spec.lora.rank}")
        lm = add_lora(lm, rank=spec.lora.rank, alpha=spec.lora.alpha, dropout=spec.lora.dropout)
    return Llava(lm=lm, projector=projector, image_token_id=ids[IMAGE_TOKEN], max_length=context_length(lm))


def _base_lm(model: Llava) -> Any:
    lm = model.lm
    return lm.get_base_model() if hasattr(lm, "get_base_model") else lm  # type: ignore[operator]


def save_llava(folder: Path, model: Llava, tokenizer: Any, spec: LlavaSpec, state: dict[str, Any]) -> None:
    """Write ``folder``: weights + ``state.json`` (``state`` plus ``"llava": spec``) + ``lm/``."""
    folder = Path(folder)
    save_model_dir(folder, model, {**state, "llava": dataclasses.asdict(spec)})
    write_lm_skeleton(folder, model, tokenizer)


def write_lm_skeleton(folder: Path, model: Llava, tokenizer: Any) -> None:
    """``folder/lm``: the LM's config and tokenizer (no weights: they are in ``model.safetensors``)."""
    lm_dir = Path(folder) / LM_SUBDIR
    if lm_dir.exists():
        shutil.rmtree(lm_dir)
    lm_dir.mkdir(parents=True)
    _base_lm(model).config.save_pretrained(str(lm_dir))
    tokenizer.save_pretrained(str(lm_dir))


def load_llava(folder: str | Path) -> tuple[Llava, Any, dict[str, Any]]:
    """Rebuild a saved LLaVA model and load its weights strictly.

    Returns:
        (model in eval mode, tokenizer, the folder's state.json).

    Raises:
        CheckpointError: not a LLaVA folder, pickle weights, or weights that do not match.
    """
    from xmodal.config import from_dict

    folder = Path(folder)
    state_path = folder / STATE_FILE
    if not state_path.is_file() or not (folder / MODEL_FILE).is_file():
        raise CheckpointError(f"{folder} is not a LLaVA checkpoint (needs {MODEL_FILE} and {STATE_FILE})")
    state = json.loads(state_path.read_text())
    if "llava" not in state or not (folder / LM_SUBDIR / "config.json").is_file():
        raise CheckpointError(f"{folder} is not a LLaVA checkpoint (no 'llava' entry or no lm/ folder)")
    try:
        spec = from_dict(LlavaSpec, state["llava"], "llava")
    except ConfigError as e:
        raise CheckpointError(f"{state_path}: {e}") from None
    _quiet_transformers()
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    lm_dir = str(folder / LM_SUBDIR)
    lm = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(lm_dir, local_files_only=True))
    tokenizer = AutoTokenizer.from_pretrained(lm_dir, local_files_only=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = build_llava(lm, tokenizer, spec)
    load_model_weights(model, folder / MODEL_FILE)
    return model.eval(), tokenizer, state


# -- tiny registered instances for the registry-wide model test ---------------------------------------
def _tiny_case(workdir: Path, arch: str, *, lora: bool) -> Any:
    import torch

    from xmodal.data.instruct import collate, encode_samples
    from xmodal.lm.loading import load_causal_lm
    from xmodal.lm.sequences import MaskedCounter, TruncationCounter
    from xmodal.lm.tiny import save_tiny_lm
    from xmodal.models.cases import TinyCase

    folder = Path(workdir) / f"tiny-{arch}"
    if not (folder / "config.json").is_file():
        save_tiny_lm(folder, arch)  # type: ignore[arg-type]
    spec = LlavaSpec(
        vision_dim=24, projector=ProjectorConfig(kind="mlp", depth=2), lora=LoraSettings(lora, 4)
    )

    def make() -> Llava:
        torch.manual_seed(0)
        lm, tok = load_causal_lm(folder)
        model = build_llava(lm, tok, spec)
        model.set_stage(2)
        return model

    model = make()
    if lora:  # as after some training: LoRA's B starts at zero, which would leave A without gradient
        gen = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for pname, p in model.named_parameters():
                if "lora_B" in pname:
                    p.copy_(0.02 * torch.randn(p.shape, generator=gen))
    _, tok = load_causal_lm(folder)
    add_multimodal_tokens(tok)
    convs = [
        [
            {"role": "user", "content": f"{IMAGE_TOKEN}\nwhat is it?"},
            {"role": "assistant", "content": "a cat"},
        ],
        [{"role": "user", "content": f"{IMAGE_TOKEN}\nis it red?"}, {"role": "assistant", "content": "no"}],
    ]
    samples = encode_samples(
        tok,
        convs,
        [[0], [1]],
        image_token_id=model.image_token_id,
        tokens_per_image=4,
        max_length=128,
        truncation=TruncationCounter(),
        masked=MaskedCounter(),
    )
    ids, mask, labels = collate([s.input_ids for s in samples], tok.pad_token_id, [s.labels for s in samples])
    image_tokens = torch.randn(2, 4, 24, generator=torch.Generator().manual_seed(0))
    inputs = {"input_ids": ids, "image_tokens": image_tokens, "attention_mask": mask, "labels": labels}

    def expected_trainable(name: str) -> bool:
        return name.startswith("projector.") or ("lora_" in name if lora else name.startswith("lm."))

    return TinyCase(model, inputs, make, trainable=expected_trainable)


@VL_MODELS.register("llava-tiny-gpt2")
def llava_tiny_gpt2(workdir: Path) -> Any:
    """LLaVA stage 2 (full fine-tuning) on a tiny random GPT-2-shaped LM."""
    return _tiny_case(workdir, "gpt2", lora=False)


@VL_MODELS.register("llava-tiny-llama-lora")
def llava_tiny_llama_lora(workdir: Path) -> Any:
    """LLaVA stage 2 with LoRA adapters on a tiny random Llama-shaped LM."""
    return _tiny_case(workdir, "llama", lora=True)
