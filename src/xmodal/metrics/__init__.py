"""Metrics: retrieval and classification on tensors; caption metrics as pycocoevalcap computes them
(:func:`caption_scores`); VQA accuracy as the official VQA evaluation computes it (:func:`vqa_accuracy`)."""

from xmodal.metrics.captions import caption_scores
from xmodal.metrics.vqa import vqa_accuracy

__all__ = ["caption_scores", "vqa_accuracy"]
