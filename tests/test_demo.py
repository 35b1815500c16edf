"""The demo pipeline end to end, shrunk: one seed, one ablation, a tiny from-scratch recipe."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from xmodal.demo import Ablation, DemoOptions, findings_markdown, run_demo

RECIPE = Path(__file__).resolve().parents[1] / "configs" / "clip_vit_tiny.yaml"


def test_tiny_demo_writes_metrics_and_report(tmp_path: Path) -> None:
    opts = DemoOptions(
        recipe=RECIPE,
        seeds=(0, 1),
        ablations=(Ablation("- augmentation", ("data.augment.enabled=false",), "augmentation?"),),
        ablation_seeds=(0,),
        overrides=("train.steps=6", "train.eval_every=3", "train.ckpt_every=6", "eval.max_images=300"),
    )
    result = run_demo(tmp_path, options=opts)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["emoji_test"]["n"] >= 300
    for direction in ("image_to_text", "text_to_image"):
        assert set(saved["emoji_test"][direction]) >= {"R@1", "R@5", "R@10"}
    zs = saved["fashion_mnist_zero_shot"]
    assert zs["n"] == 300 and 0.0 <= zs["top1"] <= zs["top5"] <= 1.0 and len(zs["per_class"]) == 10
    assert saved["train"]["steps"] == 6 and saved["train"]["seconds"] > 0
    assert set(saved["seeds"]) == {"0", "1"}
    assert (
        saved["seed_summary"]["emoji_test/i2t_R@1"]["min"]
        <= saved["seed_summary"]["emoji_test/i2t_R@1"]["mean"]
    )
    assert [a["name"] for a in saved["ablations"]] == ["default recipe", "- augmentation"]
    assert result["emoji_test"] == saved["emoji_test"]
    report = (tmp_path / "report.md").read_text()
    for png in ("loss.png", "retrieval_grid.png", "confusion.png"):
        assert f"({png})" in report
        with Image.open(tmp_path / png) as im:
            assert im.width > 200 and im.height > 200
    assert "What made the difference" in report and "- augmentation" in report


def test_findings_lists_deltas_against_the_default() -> None:
    result = {
        "seed_summary": {"x/i2t_R@1": {"mean": 0.5, "std": 0.01, "min": 0.49}},
        "ablations": [
            {"name": "default recipe", "question": "", "x/i2t_R@1": 0.5},
            {"name": "- thing", "question": "q?", "x/i2t_R@1": 0.4},
        ],
        "demo_seconds": 12.0,
    }
    text = findings_markdown(result)
    assert "| - thing | q? | -0.100 |" in text
    assert "| x/i2t_R@1 | 0.500 | 0.010 | 0.490 |" in text
