"""Metrics: retrieval and classification on tensors; caption metrics as pycocoevalcap computes them
(:func:`caption_scores`); VQA accuracy as the official VQA evaluation computes it (:func:`vqa_accuracy`);
recall@K with several captions per image as CLIP_benchmark computes it (:func:`retrieval_recall`)."""

from xmodal.metrics.caption_retrieval import retrieval_recall
from xmodal.metrics.captions import caption_scores
from xmodal.metrics.vqa import vqa_accuracy

__all__ = ["caption_scores", "retrieval_recall", "vqa_accuracy"]
