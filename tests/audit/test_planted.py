"""The contamination audit finds planted Fashion-MNIST copies hidden among emoji training images.

Training list (JSONL): the 740 emoji images of the emoji test split plus 50 planted copies of Fashion-MNIST
test images (as xmodal loads them: inverted to dark-on-white RGB): 25 exact copies saved as PNG, 25 modified
ones, cycling through: resized ×2 and back, resized to 64 px, re-encoded as JPEG at quality 75, brightness
×0.9. Evaluation set: ``fashion-mnist:test`` (10,000 images). The audit runs through the CLI with default
thresholds (pHash radius 6).

* found: a planted item paired with the very Fashion-MNIST image it was made from (any image kind);
  required: at least 95% of the 50.
* false-positive rate: flagged training items that are not planted / training items that are not planted
  (the 740 emoji); required: at most 1%.
"""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

from PIL import Image, ImageEnhance

from xmodal.cli import main
from xmodal.data.emoji import EmojiDataset
from xmodal.data.fashion_mnist import FashionMNIST


def modified(image: Image.Image, k: int) -> tuple[Image.Image, str]:
    """The k-th modification (cycling) and the file suffix to save it with."""
    kind = k % 4
    if kind == 0:
        return image.resize((56, 56), Image.Resampling.BICUBIC).resize(
            (28, 28), Image.Resampling.BICUBIC
        ), ".png"
    if kind == 1:
        return image.resize((64, 64), Image.Resampling.BICUBIC), ".png"
    if kind == 2:
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=75)
        return Image.open(io.BytesIO(buf.getvalue())), ".jpg"  # saved as the JPEG bytes themselves
    return ImageEnhance.Brightness(image).enhance(0.9), ".png"


def test_planted_duplicates_found_with_few_false_positives(tmp_path: Path):
    emoji = EmojiDataset(split="test")
    fmnist = FashionMNIST(split="test")
    rng = random.Random(4)
    sources = rng.sample(range(len(fmnist)), 50)
    rows = [{"image": str(it.image_path), "caption": it.caption} for it in emoji.items]
    planted: dict[int, int] = {}  # train row → the fashion-mnist index it copies
    for k, j in enumerate(sources):
        image = fmnist.to_pil(j)
        if k < 25:
            path = tmp_path / f"copy_{k}.png"
            image.save(path)
        else:
            changed, suffix = modified(image, k)
            path = tmp_path / f"near_{k}{suffix}"
            if suffix == ".jpg":
                buf = io.BytesIO()
                image.save(buf, "JPEG", quality=75)
                path.write_bytes(buf.getvalue())
            else:
                changed.save(path)
        planted[len(rows)] = j
        rows.append({"image": path.name, "caption": f"planted item {k}"})
    order = list(range(len(rows)))
    rng.shuffle(order)  # planted rows anywhere in the list
    train_list = tmp_path / "train.jsonl"
    train_list.write_text("".join(json.dumps(rows[i]) + "\n" for i in order))
    planted = {order.index(r): j for r, j in planted.items()}

    out, clean = tmp_path / "audit", tmp_path / "train_clean.jsonl"
    code = main(
        ["audit", "contamination", "--train", str(train_list), "--eval", "fashion-mnist:test",
         "--out", str(out), "--exclude", str(clean)]
    )  # fmt: skip
    assert code == 0
    pairs = [json.loads(line) for line in (out / "pairs.jsonl").read_text().splitlines()]
    found = {p["train_index"] for p in pairs if planted.get(p["train_index"]) == p["eval_index"]}
    assert len(found) >= 0.95 * 50, f"found {len(found)} of 50 planted duplicates"
    exact = {p["train_index"] for p in pairs if p["kind"] == "exact_pixels"}
    png_copies = {r for r in planted if order[r] < len(emoji.items) + 25}  # the first 25 planted rows
    assert png_copies <= exact
    flagged = {p["train_index"] for p in pairs}
    false_positive_rate = len(flagged - set(planted)) / (len(rows) - len(planted))
    print(f"found {len(found)} of 50 planted; false-positive rate {false_positive_rate:.2%}")  # pytest -s
    assert false_positive_rate <= 0.01, f"false-positive rate {false_positive_rate:.2%}"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_train"] == len(rows) and summary["n_eval"] == len(fmnist)
    assert summary["flagged_train_items"] == len(flagged)
    kept = [json.loads(line) for line in clean.read_text().splitlines()]
    assert kept == [rows[order[i]] for i in range(len(rows)) if i not in flagged]  # rows verbatim, in order
