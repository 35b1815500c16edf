"""CLIPScore and RefCLIPScore: reference-free (and reference-augmented) caption scores from a dual encoder.

Hessel et al. 2021, "CLIPScore: A Reference-free Evaluation Metric for Image Captioning",
https://arxiv.org/abs/2104.08718, §3:

    CLIP-S(c, v)       = w · max(cos(c, v), 0),                        w = 2.5
    RefCLIP-S(c, R, v) = H-Mean(CLIP-S(c, v), max(max_{r∈R} cos(c, r), 0))

with c the candidate caption's text embedding, v the image embedding and R the reference captions'
embeddings; H-Mean(a, b) = 2ab / (a + b) (0 when both are 0). Corpus scores are means over images.
torchmetrics' ``CLIPScore`` reports 100 · max(cos, 0) instead (w = 100, and its module clamps the *mean*
of the cosines rather than each one), so ``clip_score(..., w=100)`` equals its functional form per pair.

CLIPScore is a learned, model-dependent similarity: report it beside reference-based caption metrics
(BLEU, CIDEr; :mod:`xmodal.eval.clipscore` always does), never alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

W_CLIPSCORE = 2.5
"""Hessel et al.'s rescaling weight w: it spreads CLIP-S over roughly [0, 1] for ViT-B/32."""


def _check(a: Tensor, b: Tensor, what: str) -> None:
    if a.ndim != 2 or b.ndim != 2 or a.shape != b.shape:
        raise ValueError(
            f"{what}: expected two (N, E) tensors of one shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def clip_score(image_emb: Tensor, text_emb: Tensor, *, w: float = W_CLIPSCORE) -> tuple[Tensor, float]:
    """CLIP-S of N (image, caption) pairs.

    Args:
        image_emb: (N, E) image embeddings (normalised here; any scale is fine).
        text_emb: (N, E) embeddings of the candidate captions; row i describes image i.
        w: the weight (2.5 as Hessel et al.; 100 gives torchmetrics' scale).

    Returns:
        (per-pair scores (N,) = w · max(cos, 0), their mean as a float).
    """
    _check(image_emb, text_emb, "clip_score")
    cos = (F.normalize(image_emb.float(), dim=-1) * F.normalize(text_emb.float(), dim=-1)).sum(-1)  # (N,)
    per = w * cos.clamp_min(0.0)
    return per, float(per.mean()) if per.numel() else float("nan")


def best_reference_similarity(cand_emb: Tensor, refs_emb: Tensor, owner: Tensor) -> Tensor:
    """max(max_{r of candidate i} cos(c_i, r), 0) for every candidate.

    Args:
        cand_emb: (N, E) candidate caption embeddings.
        refs_emb: (R, E) embeddings of all references.
        owner: (R,) long, the candidate (image) index in [0, N) each reference belongs to.

    Returns:
        (N,) the clamped best similarity; a candidate without references raises ValueError.
    """
    n = cand_emb.shape[0]
    if owner.ndim != 1 or owner.shape[0] != refs_emb.shape[0] or refs_emb.ndim != 2:
        raise ValueError(
            f"owner must be (R,) for refs (R, E), got {tuple(owner.shape)} and {tuple(refs_emb.shape)}"
        )
    owner = owner.to(torch.long)
    if owner.numel() and (int(owner.min()) < 0 or int(owner.max()) >= n):
        raise ValueError(f"owner indices must lie in [0, {n})")
    counts = torch.bincount(owner, minlength=n)
    if bool((counts == 0).any()):
        missing = torch.nonzero(counts == 0).flatten().tolist()
        raise ValueError(f"candidates without references: {missing[:5]} ({len(missing)} in all)")
    c = F.normalize(cand_emb.float(), dim=-1)
    r = F.normalize(refs_emb.float(), dim=-1)
    sims = (c[owner] * r).sum(-1)  # (R,) cos(c_owner(r), r)
    best = torch.full((n,), float("-inf"), dtype=sims.dtype, device=sims.device)
    best = best.scatter_reduce(0, owner, sims, reduce="amax", include_self=True)
    return best.clamp_min(0.0)


def ref_clip_score(
    image_emb: Tensor, cand_emb: Tensor, refs_emb: Tensor, owner: Tensor, *, w: float = W_CLIPSCORE
) -> tuple[Tensor, float]:
    """RefCLIP-S: the harmonic mean of CLIP-S and the best clamped reference similarity.

    Args:
        image_emb: (N, E) image embeddings.
        cand_emb: (N, E) candidate caption embeddings (row i for image i).
        refs_emb: (R, E) reference caption embeddings, all images together.
        owner: (R,) long, which image each reference belongs to (every image needs at least one).
        w: CLIP-S's weight.

    Returns:
        (per-image RefCLIP-S (N,), their mean as a float).
    """
    a, _ = clip_score(image_emb, cand_emb, w=w)
    b = best_reference_similarity(cand_emb, refs_emb, owner)
    denom = a + b
    per = torch.where(
        denom > 0, 2 * a * b / denom.clamp_min(torch.finfo(denom.dtype).tiny), torch.zeros_like(a)
    )
    return per, float(per.mean()) if per.numel() else float("nan")


def scores_reference(
    image_emb: Tensor, cand_emb: Tensor, refs: list[Tensor], *, w: float = W_CLIPSCORE
) -> tuple[list[float], list[float]]:
    """CLIP-S and RefCLIP-S image by image in float64, straight from the definitions (tests compare the
    vectorised functions with this). ``refs[i]`` is the (R_i, E) references of image i."""

    def cos(a: Tensor, b: Tensor) -> float:
        return float(a @ b) / (float(a.norm()) * float(b.norm()))

    clip_s, ref_s = [], []
    for v, c, r in zip(image_emb.double(), cand_emb.double(), refs, strict=True):
        a = w * max(cos(v, c), 0.0)
        b = max(max(cos(c, x) for x in r.double()), 0.0)
        clip_s.append(a)
        ref_s.append(2 * a * b / (a + b) if a + b > 0 else 0.0)
    return clip_s, ref_s
