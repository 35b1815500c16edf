"""Tests for xmodal.train.checkpoint: no pickles, strict keys/shapes, atomic folders, clear errors."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import xmodal.train.checkpoint as ckpt
from xmodal.config import ExperimentConfig, to_dict
from xmodal.errors import CheckpointError
from xmodal.models.factory import clip_vit_tiny
from xmodal.models.io import load_checkpoint
from xmodal.train.checkpoint import (
    MODEL_FILE,
    OPTIM_FILE,
    check_state_dict,
    load_model_weights,
    read_safetensors,
    read_state,
    restore_training_checkpoint,
    save_model_dir,
    save_training_checkpoint,
    write_json_atomic,
)


class Net(nn.Module):
    def __init__(self, hidden: int = 4) -> None:
        super().__init__()
        self.fc = nn.Linear(3, hidden)
        self.bn = nn.BatchNorm1d(hidden)
        self.out = nn.Linear(hidden, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 3) → (B, 2)."""
        return self.out(self.bn(self.fc(x)))


def net(seed: int, hidden: int = 4) -> Net:
    torch.manual_seed(seed)
    return Net(hidden)


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


# -- pickles are refused ---------------------------------------------------------------------------
def test_torch_save_file_is_refused(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(net(0).state_dict(), path)
    with pytest.raises(CheckpointError, match="pickle") as e:
        read_safetensors(path)
    assert str(path) in one_line(e)


def test_raw_pickle_is_refused_even_with_a_safetensors_name(tmp_path):
    path = tmp_path / MODEL_FILE
    path.write_bytes(pickle.dumps({"fc.weight": [1.0, 2.0]}))
    with pytest.raises(CheckpointError, match="pickle") as e:
        load_model_weights(net(0), path)
    assert "arbitrary code" in one_line(e)


def test_safetensors_whose_header_length_starts_with_the_pickle_opcode_loads(tmp_path):
    """Regression: the header length is little-endian, so its first byte is 0x80 for 1 file in 256."""
    path = tmp_path / MODEL_FILE
    for pad in range(300):
        tensors = {"w" * (1 + pad): torch.arange(3.0)}
        save_file(tensors, str(path))
        if path.read_bytes()[:1] == b"\x80":
            break
    else:
        pytest.fail("no header length ending in 0x80 found")
    assert torch.equal(read_safetensors(path)["w" * (1 + pad)], torch.arange(3.0))


def test_load_checkpoint_refuses_a_pickle_file(tmp_path):
    path = tmp_path / "weights.bin"
    torch.save({"x": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(path)


# -- keys and shapes -------------------------------------------------------------------------------
def test_mismatch_lists_missing_unexpected_and_shapes_and_leaves_model_untouched(tmp_path):
    state = {k: v.clone() for k, v in net(1).state_dict().items()}
    del state["out.bias"]
    state["extra.weight"] = torch.zeros(1)
    state["fc.weight"] = torch.zeros(5, 3)
    path = tmp_path / MODEL_FILE
    save_file(state, str(path))
    model = net(0)
    before = snapshot(model)
    with pytest.raises(CheckpointError) as e:
        load_model_weights(model, path)
    msg = one_line(e)
    assert "1 missing: out.bias" in msg
    assert "1 unexpected: extra.weight" in msg
    assert "1 shape mismatch: fc.weight (5, 3)≠(4, 3)" in msg
    assert same(before, snapshot(model))


def test_long_lists_are_shortened():
    model = nn.Sequential(*[nn.Linear(2, 2) for _ in range(4)])  # 8 tensors
    with pytest.raises(CheckpointError, match=r"8 missing: .* … \(\+3\)"):
        check_state_dict(model, {}, "empty")


def test_matching_weights_load_exactly(tmp_path):
    src, dst = net(1), net(2)
    save_model_dir(tmp_path / "m", src, {"step": 3})
    load_model_weights(dst, tmp_path / "m" / MODEL_FILE)
    assert same(snapshot(src), snapshot(dst))
    assert read_state(tmp_path / "m") == {"step": 3}


# -- corrupt files ---------------------------------------------------------------------------------
@pytest.mark.parametrize("cut", [0, 5, 100, -10])
def test_truncated_or_garbage_safetensors_is_a_checkpoint_error(tmp_path, cut):
    path = tmp_path / MODEL_FILE
    save_file({k: v.contiguous() for k, v in net(0).state_dict().items()}, str(path))
    data = path.read_bytes()
    path.write_bytes(data[:cut])
    with pytest.raises(CheckpointError, match="not a valid safetensors file") as e:
        read_safetensors(path)
    assert str(path) in one_line(e)


def test_garbage_bytes_and_missing_file(tmp_path):
    path = tmp_path / "x.safetensors"
    path.write_bytes(b"hello, this is not a checkpoint")
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        read_safetensors(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        read_safetensors(tmp_path / "nope.safetensors")


def test_bad_state_json(tmp_path):
    with pytest.raises(CheckpointError, match="not an xmodal checkpoint"):
        read_state(tmp_path)
    (tmp_path / "state.json").write_text("{oops")
    with pytest.raises(CheckpointError, match=r"state\.json is not valid JSON \(line 1\)"):
        read_state(tmp_path)
    (tmp_path / "state.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="must hold a JSON object"):
        read_state(tmp_path)


def test_load_checkpoint_with_a_config_that_does_not_match_the_weights(tmp_path):
    from xmodal.models.factory import build_model

    cfg = clip_vit_tiny()
    save_model_dir(tmp_path / "m", build_model(cfg), {"config": to_dict(ExperimentConfig(model=cfg))})
    state = json.loads((tmp_path / "m" / "state.json").read_text())
    state["config"]["model"]["embed_dim"] = 32
    (tmp_path / "m" / "state.json").write_text(json.dumps(state))
    with pytest.raises(
        CheckpointError, match=r"shape mismatch: .*image_head\.proj\.weight \(64, 64\)≠\(32, 64\)"
    ):
        load_checkpoint(tmp_path / "m")
    state["config"]["model"]["embed_dims"] = 32
    (tmp_path / "m" / "state.json").write_text(json.dumps(state))
    with pytest.raises(CheckpointError, match=r"unknown config key 'model\.embed_dims'"):
        load_checkpoint(tmp_path / "m")


# -- atomic writes ---------------------------------------------------------------------------------
def failing_after(n_ok: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``save_file`` write a partial file then raise, after ``n_ok`` successful calls."""
    real = ckpt.save_file
    calls = {"n": 0}

    def fake(tensors, filename, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > n_ok:
            Path(filename).write_bytes(b"\x08\x00partial")
            raise OSError(28, "No space left on device")
        return real(tensors, filename, *args, **kwargs)

    monkeypatch.setattr(ckpt, "save_file", fake)


def training_parts(seed: int) -> tuple[Net, torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """A model after one AdamW step (so the optimizer has moments) and its stepped scheduler."""
    model = net(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5**s)
    model(torch.randn(5, 3)).sum().backward()
    opt.step()
    sched.step()
    return model, opt, sched


@pytest.mark.parametrize("n_ok", [0, 1])
def test_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch, n_ok):
    folder = tmp_path / "checkpoints" / "last"
    model, opt, sched = training_parts(0)
    save_training_checkpoint(folder, model=model, optimizer=opt, scheduler=sched, state={"step": 4})
    files_before = {p.name: p.read_bytes() for p in folder.iterdir()}

    newer, nopt, nsched = training_parts(1)
    failing_after(n_ok, monkeypatch)  # fail on the model file (0) or the optimizer file (1)
    with pytest.raises(OSError, match="No space left"):
        save_training_checkpoint(folder, model=newer, optimizer=nopt, scheduler=nsched, state={"step": 8})
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == files_before
    assert sorted(p.name for p in folder.parent.iterdir()) == ["last"]  # no half-written folder left
    monkeypatch.undo()

    fresh, fopt, fsched = training_parts(2)
    state, _ = restore_training_checkpoint(folder, model=fresh, optimizer=fopt, scheduler=fsched)
    assert state["step"] == 4 and same(snapshot(fresh), snapshot(model))


def test_failed_first_save_leaves_nothing(tmp_path, monkeypatch):
    failing_after(0, monkeypatch)
    with pytest.raises(OSError):
        save_model_dir(tmp_path / "model", net(0), {"step": 1})
    assert list(tmp_path.iterdir()) == []


def test_successful_save_replaces_the_folder_whole(tmp_path):
    folder = tmp_path / "model"
    save_model_dir(folder, net(0), {"step": 1})
    (folder / "stale.txt").write_text("from an older layout")
    save_model_dir(folder, net(1), {"step": 2})
    assert sorted(p.name for p in folder.iterdir()) == [MODEL_FILE, "state.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert read_state(folder)["step"] == 2


def test_write_json_atomic_failure_keeps_old_file(tmp_path):
    path = tmp_path / "metrics.json"
    write_json_atomic(path, {"a": 1})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"a": object()})
    assert json.loads(path.read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


# -- training checkpoints --------------------------------------------------------------------------
def test_training_checkpoint_round_trip_restores_everything(tmp_path):
    folder = tmp_path / "last"
    model, opt, sched = training_parts(0)
    torch.manual_seed(99)
    extra = {"best.fc.weight": torch.ones(4, 3)}
    save_training_checkpoint(
        folder, model=model, optimizer=opt, scheduler=sched, state={"step": 1}, extra_tensors=extra
    )
    expected_draw = torch.rand(3)
    assert (folder / OPTIM_FILE).is_file()

    fresh, fopt, fsched = training_parts(5)
    state, restored_extra = restore_training_checkpoint(folder, model=fresh, optimizer=fopt, scheduler=fsched)
    assert state["step"] == 1
    assert same(snapshot(fresh), snapshot(model))
    assert torch.equal(restored_extra["best.fc.weight"], extra["best.fc.weight"])
    assert torch.equal(torch.rand(3), expected_draw)  # the global RNG continues where it was saved
    assert fsched.state_dict()["last_epoch"] == sched.state_dict()["last_epoch"]
    a, b = opt.state_dict(), fopt.state_dict()
    for idx in a["state"]:
        for key in a["state"][idx]:
            assert torch.equal(torch.as_tensor(a["state"][idx][key]), torch.as_tensor(b["state"][idx][key]))


def test_restore_refuses_a_model_only_folder_and_changed_groups(tmp_path):
    model, opt, sched = training_parts(0)
    save_model_dir(tmp_path / "model", model, {"step": 1})
    with pytest.raises(CheckpointError):
        restore_training_checkpoint(tmp_path / "model", model=model, optimizer=opt, scheduler=sched)
    save_training_checkpoint(
        tmp_path / "last", model=model, optimizer=opt, scheduler=sched, state={"step": 1}
    )
    other = net(3)
    before = snapshot(other)
    two_groups = torch.optim.AdamW(
        [{"params": other.fc.parameters()}, {"params": [*other.bn.parameters(), *other.out.parameters()]}]
    )
    s2 = torch.optim.lr_scheduler.LambdaLR(two_groups, lambda s: 1.0)
    with pytest.raises(CheckpointError, match="parameter groups differ"):
        restore_training_checkpoint(tmp_path / "last", model=other, optimizer=two_groups, scheduler=s2)
    assert same(before, snapshot(other))  # checked before anything was loaded
