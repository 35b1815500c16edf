"""The NegCLIP loss (:func:`xmodal.losses.negatives.clip_loss_with_negatives`) in exact blocks.

Extends the blockwise CLIP loss of :mod:`xmodal.losses.chunked` (same notation: I (B, D), T (B, D),
S = s · I Tᵀ) with M negative captions N (M, D) whose logits Sn = s · I Nᵀ + log w join the image→text
rows only::

    lse'_i = log( Σ_j e^{S_ij} + Σ_m e^{Sn_im} )        (row log-sum-exp over B + M columns)
    loss   = ( Σ_i (lse'_i − S_ii) + Σ_j (lse_col_j − S_jj) ) / 2B
    2B · ∂loss/∂S  = P'_row + P_col − 2·Id,   P'_row = e^{S − lse'},  P_col = e^{S − lse_col}
    2B · ∂loss/∂Sn = Pn = e^{Sn − lse'}

so dI = s (X T + Pn N) / 2B with X = P'_row + P_col − 2·Id, dT = s Xᵀ I / 2B, dN = s Pnᵀ I / 2B and
ds = Σ I ∘ (X T + Pn N) / 2B. The forward takes the row and column log-sum-exps of S from
:func:`~xmodal.losses.chunked.clip_log_sum_exps` and merges the negatives' (chunk, chunk) blocks into
the rows online; the backward reuses :func:`~xmodal.losses.chunked.clip_prob_products` with lse' in
place of the plain row log-sum-exp, then adds the negatives' blocks. Memory: O((B + M)·D + chunk²).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from xmodal.losses.chunked import (
    _as_scalar,
    _grad_like,
    _merge,
    _meta,
    clip_log_sum_exps,
    clip_prob_products,
    compute_dtype,
    spans,
)


def _negative_row_lse(
    img: Tensor, neg: Tensor, scale: Tensor, offset: float, shift: Tensor, total: Tensor, chunk: int
) -> tuple[Tensor, Tensor]:
    """Merge the rows of Sn = scale · img negᵀ + offset into the (shift, sum) pairs of the rows of S."""
    shift, total = shift.clone(), total.clone()
    for r0, r1 in spans(img.shape[0], chunk):
        a = img[r0:r1] * scale  # (c, D)
        for c0, c1 in spans(neg.shape[0], chunk):
            block = a @ neg[c0:c1].T + offset  # (c, c') negative logits
            top = block.amax(dim=1)
            part = (block - top[:, None]).exp_().sum(dim=1)
            shift[r0:r1], total[r0:r1] = _merge(shift[r0:r1], total[r0:r1], top, part)
    return shift, total


class ChunkedClipNegativesLoss(torch.autograd.Function):
    """NegCLIP loss over blocks; saves I, T, N, s and the (B,) row (with negatives) and column lse."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        image_features: Tensor,
        text_features: Tensor,
        negative_features: Tensor,
        logit_scale: Tensor | float,
        log_weight: float,
        chunk: int,
    ) -> Tensor:
        """(B, D), (B, D), (M, D), scalar, log w, int → scalar loss in the compute dtype."""
        dtype = compute_dtype(image_features.dtype)
        img, txt = image_features.to(dtype), text_features.to(dtype)
        neg = negative_features.to(dtype)
        scale = _as_scalar(logit_scale, img)
        b = img.shape[0]
        with torch.autocast(img.device.type, enabled=False):
            lse = clip_log_sum_exps(img, txt, scale, chunk)
            row_shift, row_sum = _negative_row_lse(
                img, neg, scale, log_weight, lse.row_shift, lse.row_sum, chunk
            )
            log_row_sum, log_col_sum = row_sum.log(), lse.col_sum.log()
            row_terms = ((row_shift - lse.diag) + log_row_sum).clamp_min_(0)
            col_terms = ((lse.col_shift - lse.diag) + log_col_sum).clamp_min_(0)
            loss = (row_terms.sum() + col_terms.sum()) / (2 * b)
            lse_row, lse_col = row_shift + log_row_sum, lse.col_shift + log_col_sum
        ctx.save_for_backward(img, txt, neg, scale, lse_row, lse_col)
        ctx.chunk, ctx.log_weight = chunk, log_weight
        ctx.metas = [_meta(v) for v in (image_features, text_features, negative_features, logit_scale)]
        return loss

    @staticmethod
    def backward(ctx: Any, grad_loss: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        """Recompute each block once; return (dI, dT, dN, d scale, None, None)."""
        img, txt, neg, scale, lse_row, lse_col = ctx.saved_tensors
        need_img, need_txt, need_neg, need_scale = ctx.needs_input_grad[:4]
        b, chunk = img.shape[0], ctx.chunk
        with torch.autocast(img.device.type, enabled=False):
            g_img, g_txt = clip_prob_products(
                img, txt, scale, lse_row, lse_col, chunk, want_img=True, want_txt=need_txt
            )
            assert g_img is not None
            g_neg = torch.zeros_like(neg) if need_neg else None
            for r0, r1 in spans(b, chunk):
                a = img[r0:r1] * scale
                for c0, c1 in spans(neg.shape[0], chunk):
                    probs = (a @ neg[c0:c1].T + ctx.log_weight - lse_row[r0:r1, None]).exp_()  # Pn block
                    g_img[r0:r1].addmm_(probs, neg[c0:c1])
                    if g_neg is not None:
                        g_neg[c0:c1].addmm_(probs.T, img[r0:r1])
            factor = grad_loss.to(img.dtype) / (2 * b)
            d_scale = (img * g_img).sum() * factor if need_scale else None
            d_img = g_img.mul_(scale * factor) if need_img else None
            d_txt = g_txt.mul_(scale * factor) if g_txt is not None else None
            d_neg = g_neg.mul_(scale * factor) if g_neg is not None else None
        grads = (d_img, d_txt, d_neg, d_scale)
        needs = (need_img, need_txt, need_neg, need_scale)
        out = (_grad_like(g, m, need) for g, m, need in zip(grads, ctx.metas, needs, strict=True))
        return (*out, None, None)


def chunked_clip_loss_with_negatives(
    image_features: Tensor,
    text_features: Tensor,
    negative_features: Tensor,
    logit_scale: Tensor | float,
    negative_weight: float,
    chunk_size: int,
) -> Tensor:
    """NegCLIP loss in (chunk_size, chunk_size) blocks (see the module docstring).

    Args:
        image_features, text_features: (B, D).
        negative_features: (M, D) real negatives only (drop padding slots first).
        logit_scale: the multiplier, a scalar tensor or float.
        negative_weight: w > 0.
        chunk_size: block side.

    Returns:
        Scalar loss (float32, or float64 for float64 inputs), differentiable w.r.t. all four inputs.
    """
    return ChunkedClipNegativesLoss.apply(
        image_features, text_features, negative_features, logit_scale, math.log(negative_weight), chunk_size
    )
