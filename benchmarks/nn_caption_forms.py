"""How much the form of a caption moves CIDEr-D on the held-out emoji: the nearest-neighbour baseline
returning the name (first reference) of the most similar training emoji, against the same neighbour's
last reference (its short name where it has one).

The emoji have one or two references each (the name, then a distinct short name: "keycap 1" / "one");
CIDEr-D rewards the longer names, so a model trained on every reference pays for the short forms it
generates. This is why the LM recipes train on the names (``references: first``). Not a speed benchmark:
it prints the two scores and writes ``benchmarks/results/nn_caption_forms.json``.

    python benchmarks/nn_caption_forms.py
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from xmodal.data.vl import emoji_caption_items
from xmodal.tasks.caption import score
from xmodal.train.image_tokens import image_token_table


def main() -> None:
    torch.set_num_threads(1)
    train, test = emoji_caption_items("train"), emoji_caption_items("test")

    def table(items: list) -> torch.Tensor:  # the baseline's features: cached frozen EfficientNet-Lite0
        return image_token_table(lambda i: items[i].load(), len(items), image_size=128)

    a, b = table(train), table(test)
    sim = (
        torch.nn.functional.normalize(b.mean(1), dim=-1) @ torch.nn.functional.normalize(a.mean(1), dim=-1).T
    )
    nearest = [train[int(j)] for j in sim.argmax(1)]
    result = {
        "test_images": len(test),
        "two_references_share": sum(len(t.captions) > 1 for t in test) / len(test),
        "name": score(test, [n.captions[0] for n in nearest]),
        "last_reference": score(test, [n.captions[-1] for n in nearest]),
    }
    out = Path(__file__).parent / "results" / "nn_caption_forms.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    for k in ("name", "last_reference"):
        print(f"nearest neighbour, {k:15s} BLEU-4 {result[k]['Bleu_4']:.4f} CIDEr-D {result[k]['CIDEr']:.4f}")
    print(f"test emoji with two references: {result['two_references_share']:.1%}  ({out})")


if __name__ == "__main__":
    main()
