"""Readers of public benchmarks in their official file formats (a user points xmodal at local copies).

* :func:`read_karpathy`: COCO / Flickr30K captions in Karpathy's split JSON (retrieval, captioning);
* :func:`read_vqav2`: VQAv2 questions and annotations;
* :func:`read_mmbench` and :func:`circular_eval`: MMBench-style multiple choice TSV, scored with CircularEval.
"""

from xmodal.benchmarks.karpathy import KarpathyImage, caption_index, read_karpathy
from xmodal.benchmarks.mmbench import MMBenchItem, circular_eval, read_mmbench, rotate
from xmodal.benchmarks.vqav2 import VQAQuestion, coco_image_name, read_vqav2

__all__ = [
    "KarpathyImage",
    "MMBenchItem",
    "VQAQuestion",
    "caption_index",
    "circular_eval",
    "coco_image_name",
    "read_karpathy",
    "read_mmbench",
    "read_vqav2",
    "rotate",
]
