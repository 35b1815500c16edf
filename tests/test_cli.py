"""Tests for the ``xmodal`` command line, run in-process through ``main([...])`` (once as ``python -m``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
from PIL import Image

import xmodal.cli as cli
from xmodal.cli import format_size, format_table, list_recipes, main
from xmodal.data.prepare import EMOJI_IMAGE_DIR, prepare, write_emoji_splits

TINY = """\
# tiny from-scratch CLIP for CLI tests
model:
  image_encoder: {name: vit, args: {image_size: 32, patch_size: 8, dim: 64, depth: 2, num_heads: 4},
                  unlocked_blocks: -1}
  text_encoder: {name: text_transformer, args: {dim: 64, depth: 2, num_heads: 4, max_length: 48},
                 unlocked_blocks: -1}
  image_head: {kind: linear, dropout: 0.1}
  text_head: {kind: linear}
  embed_dim: 64
  image_size: 32
data: {batch_size: 32}
optim: {warmup_steps: 2}
train: {steps: 5, ckpt_every: 5, eval_every: 5, log_every: 1, threads: 1}
"""


@pytest.fixture(autouse=True)
def _restore_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.fixture
def tiny_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The single ``xmodal: error:`` line on stderr (asserting there is exactly one and no traceback)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("xmodal: error:")]
    assert len(lines) == 1, err
    assert err.rstrip().endswith(lines[0])
    return lines[0]


# -- the parser -----------------------------------------------------------------------------------
def test_python_dash_m_help():
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "xmodal", "--help"], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    for command in ("data", "train", "eval", "demo", "list"):
        assert command in proc.stdout


@pytest.mark.parametrize(
    "argv", [["train", "--help"], ["eval", "--help"], ["data", "prepare", "--help"], ["list", "--help"]]
)
def test_subcommand_help(argv, capsys):
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: xmodal")


def test_usage_errors_exit_2(capsys):
    assert main([]) == 2
    assert main(["fly"]) == 2
    assert main(["list", "planets"]) == 2
    assert main(["eval", "x.yaml"]) == 2  # --checkpoint is required
    assert "usage:" in capsys.readouterr().err


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("xmodal ")


# -- one-line errors ------------------------------------------------------------------------------
def test_unknown_config_key_is_one_line_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY.replace("embed_dim: 64", "embed_dim: 64\n  embedding_size: 64"))
    assert main(["train", str(bad), "--out", str(tmp_path / "run")]) == 2
    line = error_line(capsys)
    assert "'model.embedding_size'" in line
    assert not (tmp_path / "run").exists()


def test_set_with_wrong_type_exit_2(tiny_yaml, tmp_path, capsys):
    assert main(["train", str(tiny_yaml), "--set", "model.embed_dim=abc", "--out", str(tmp_path / "r")]) == 2
    assert "model.embed_dim: expected int, got str 'abc'" in error_line(capsys)


def test_missing_config_file_exit_2(tmp_path, capsys):
    assert main(["train", str(tmp_path / "nope.yaml")]) == 2
    assert "does not exist" in error_line(capsys)


def test_unknown_eval_target_fails_before_training(tiny_yaml, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", str(tiny_yaml), "--set", "eval.retrieval=[coco:test]", "--out", str(out)]) == 2
    assert "unknown dataset 'coco'" in error_line(capsys)
    assert not out.exists()


def test_unknown_training_dataset_is_a_config_error(tiny_yaml, tmp_path, capsys):
    assert main(["train", str(tiny_yaml), "--set", "data.dataset=coco", "--out", str(tmp_path / "r")]) == 2
    assert "data.dataset: unknown dataset 'coco'" in error_line(capsys)


def test_pickle_checkpoint_is_refused(tiny_yaml, tmp_path, capsys):
    path = tmp_path / "model.pt"
    torch.save({"weight": torch.zeros(3)}, path)
    assert main(["eval", str(tiny_yaml), "--checkpoint", str(path)]) == 2
    line = error_line(capsys)
    assert "pickle" in line and str(path) in line


def test_missing_checkpoint_exit_2(tiny_yaml, tmp_path, capsys):
    assert main(["eval", str(tiny_yaml), "--checkpoint", str(tmp_path / "none")]) == 2
    assert "does not exist" in error_line(capsys)


def test_ctrl_c_exits_130_with_a_resume_hint(tiny_yaml, tmp_path, capsys, monkeypatch):
    from xmodal.train import loop

    def interrupted(self, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop.Trainer, "fit", interrupted)
    out = tmp_path / "run"
    assert main(["train", str(tiny_yaml), "--out", str(out), "--no-progress"]) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        f"xmodal: interrupted; `xmodal train {tiny_yaml} --out {out} --resume` continues from the last "
        "checkpoint"
    )


# -- list and data --------------------------------------------------------------------------------
def test_list_shows_presets_datasets_encoders(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in (
        "clip-effnet-minilm",
        "clip-vit-tiny",
        "emoji",
        "fashion-mnist",
        "efficientnet_lite0",
        "minilm",
    ):
        assert name in out
    for section in ("models:", "datasets:", "encoders:", "recipes:"):
        assert section in out
    assert main(["list", "models"]) == 0
    out = capsys.readouterr().out
    assert "clip-vit-tiny" in out and "fashion-mnist" not in out and "models:" not in out


def test_list_recipes_reads_first_comment(tmp_path, monkeypatch, capsys):
    (tmp_path / "b.yaml").write_text("# Baseline: locked towers, MLP heads\n# more\nmodel: {}\n")
    (tmp_path / "a.yaml").write_text("train: {steps: 1}\n")
    (tmp_path / "notes.txt").write_text("# not a recipe")
    assert list_recipes(tmp_path) == [
        {"name": "a", "path": str(tmp_path / "a.yaml"), "description": ""},
        {"name": "b", "path": str(tmp_path / "b.yaml"), "description": "Baseline: locked towers, MLP heads"},
    ]
    monkeypatch.setattr(cli, "recipes_dir", lambda: tmp_path)
    assert main(["list", "recipes"]) == 0
    out = capsys.readouterr().out
    assert "Baseline: locked towers, MLP heads" in out and "notes" not in out


def test_recipes_dir_is_the_checkout_configs_folder():
    folder = cli.recipes_dir()
    assert folder.name == "configs" and (folder.parent / "src" / "xmodal" / "cli.py").is_file()


def test_data_list_on_the_real_cache(capsys):
    prepare("emoji")
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["name", "prepared", "path", "size"]
    emoji = next(line for line in out if line.startswith("emoji"))
    assert " yes " in emoji and "MB" in emoji


def test_data_list_and_prepare_errors_in_an_empty_home(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XMODAL_HOME", str(tmp_path))
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path / "data" / "emoji") in out and " no " in out
    assert main(["data", "prepare", "coco"]) == 2
    assert "unknown dataset 'coco'" in error_line(capsys)
    assert main(["data", "prepare", "emoji", "--from", str(tmp_path / "missing")]) == 2
    assert "does not exist" in error_line(capsys)


def test_data_prepare_is_idempotent_on_the_real_cache(capsys):
    root = prepare("emoji")
    assert main(["data", "prepare", "emoji"]) == 0
    assert f"emoji: prepared in {root}" in capsys.readouterr().out


def test_formatting_helpers():
    assert format_size(512) == "512 B" and format_size(15_000_000) == "15.0 MB"
    table = format_table(["a", "bb"], [["x", 0.5], ["yyy", 2]]).splitlines()
    assert table == ["a    bb", "---  ------", "x    0.5000", "yyy  2"]


# -- demo -----------------------------------------------------------------------------------------
def test_demo_calls_run_demo(tmp_path, monkeypatch, capsys):
    calls = []

    def run_demo(out_dir: Path, *, progress: bool) -> dict:
        calls.append((out_dir, progress))
        return {"metrics": {"fashion_mnist_zero_shot": {"n": 10, "top1": 0.5, "top5": 0.9}}}

    monkeypatch.setitem(sys.modules, "xmodal.demo", types.SimpleNamespace(run_demo=run_demo))
    assert main(["demo", "--out", str(tmp_path / "d"), "--no-progress"]) == 0
    assert calls == [(tmp_path / "d", False)]
    out = capsys.readouterr().out
    assert "fashion_mnist_zero_shot" in out and f"demo finished: {tmp_path / 'd'}" in out
    assert main(["demo", "--no-progress"]) == 0
    assert calls[-1] == (Path("runs/demo"), False)


# -- train → metrics.json → eval reproduces it ----------------------------------------------------
def test_train_then_eval_reproduces_metrics(tiny_yaml, tmp_path, capsys):
    prepare("emoji")
    prepare("fashion-mnist")
    out = tmp_path / "run"
    argv = ["train", str(tiny_yaml), "--set", "eval.max_images=200", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"emoji_test", "fashion_mnist_zero_shot", "train"}
    assert metrics["train"]["steps"] == 5 and metrics["train"]["best_step"] == 5
    assert metrics["train"]["seconds"] > 0
    assert metrics["fashion_mnist_zero_shot"]["n"] == 200
    assert metrics["emoji_test"]["n"] > 300 and 0 <= metrics["emoji_test"]["image_to_text"]["R@1"] <= 1
    assert "emoji_test" in printed and "image→text" in printed and "fashion_mnist_zero_shot" in printed
    assert (out / "model" / "model.safetensors").is_file() and (out / "checkpoints" / "last").is_dir()

    # a second plain `train` into the same folder would clobber the checkpoint: refused
    assert main(argv) == 2
    assert "--resume" in error_line(capsys)

    result = tmp_path / "eval.json"
    eval_argv = ["eval", str(tiny_yaml), "--checkpoint", str(out / "model"), "--set", "eval.max_images=200"]
    assert main([*eval_argv, "--out", str(result), "--no-progress"]) == 0
    assert json.loads(result.read_text()) == {k: v for k, v in metrics.items() if k != "train"}

    # targets on the command line replace the config's
    assert main([*eval_argv, "--zero-shot", "fashion-mnist:test", "--no-progress"]) == 0
    only = json.loads((out / "model" / "eval.json").read_text())
    assert only == {"fashion_mnist_zero_shot": metrics["fashion_mnist_zero_shot"]}
    assert main([*eval_argv, "--retrieval", "mscoco:test"]) == 2
    assert "unknown dataset 'mscoco'" in error_line(capsys)

    # the checkpoint's recorded model wins over a different model section in CONFIG
    assert main([*eval_argv, "--set", "model.embed_dim=32", "--out", str(result), "--no-progress"]) == 0
    assert "using the model recorded in" in capsys.readouterr().err
    assert json.loads(result.read_text()) == {k: v for k, v in metrics.items() if k != "train"}

    # --resume on a finished run has nothing left to train; --overwrite starts again
    no_eval = ["--set", "eval.retrieval=[]", "--set", "eval.zero_shot=[]", "--out", str(out), "--no-progress"]
    assert main(["train", str(tiny_yaml), "--resume", *no_eval]) == 0
    assert json.loads((out / "metrics.json").read_text())["train"]["steps"] == 5
    assert main(["train", str(tiny_yaml), "--overwrite", "--set", "train.steps=1", *no_eval]) == 0
    assert json.loads((out / "metrics.json").read_text())["train"] == {
        "seconds": pytest.approx(json.loads((out / "summary.json").read_text())["seconds"]),
        "steps": 1,
        "best_step": 1,
    }


# -- bad data stops training ----------------------------------------------------------------------
def fake_emoji_home(home: Path, n: int = 40, broken: int = 3) -> int:
    """A prepared-looking emoji folder under ``home/data/emoji`` with ``broken`` unreadable train images.

    Returns the number of train images.
    """
    root = home / "data" / "emoji"
    images = root / EMOJI_IMAGE_DIR
    images.mkdir(parents=True)
    entries = []
    for i in range(n):
        code = f"E{i:03X}"
        entry = {"name": f"TEST SHAPE {i}", "unified": code, "image": f"{code.lower()}.png"}
        entries.append({**entry, "short_names": [f"s{i}"], "category": "Symbols", "subcategory": "test"})
        Image.new("RGBA", (64, 64), (4 * i, 100, 200, 255)).save(images / f"{code.lower()}.png")
    (root / "emoji.json").write_text(json.dumps(entries))
    splits = write_emoji_splits(root)["splits"]
    for code in splits["train"][:broken]:
        (images / f"{code.lower()}.png").write_bytes(b"this is not a png")
    return len(splits["train"])


def test_too_many_unusable_images_stop_training(tiny_yaml, tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    n_train = fake_emoji_home(home)
    assert n_train >= 20
    monkeypatch.setenv("XMODAL_HOME", str(home))
    out = tmp_path / "run"
    assert main(["train", str(tiny_yaml), "--out", str(out), "--no-progress"]) == 2
    line = error_line(capsys)
    assert f"too many unusable emoji images: 3 of {n_train} skipped" in line and "limit 1.00%" in line
    assert not (out / "checkpoints").exists()
    # with a looser limit the same data trains (3 broken images are skipped and counted)
    overrides = [
        "data.max_skip_fraction=0.2",
        "eval.retrieval=[]",
        "eval.zero_shot=[]",
        "train.steps=1",
        "train.eval_every=0",
        "data.batch_size=4",
    ]
    argv = ["train", str(tiny_yaml), "--out", str(out), "--no-progress"]
    argv += [arg for o in overrides for arg in ("--set", o)]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["skipped"]["train"]["total"] == 3


def test_unknown_task_is_a_one_line_error(tmp_path, capsys):
    from xmodal.cli import main

    cfg = tmp_path / "r.yaml"
    cfg.write_text("task: no_such_task\n")
    assert main(["train", str(cfg), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "unknown task 'no_such_task'" in err and err.count("\n") == 1
