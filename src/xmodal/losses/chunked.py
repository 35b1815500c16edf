"""Exact blockwise contrastive losses whose memory grows as N·chunk, not N².

The plain losses build the (N, N) logits ``s · I Tᵀ`` and autograd keeps them (and their softmax) for
the backward: at N = 16,384 that is several GiB. Here the logits are only ever formed one
(chunk, chunk) block at a time, and each loss is a ``torch.autograd.Function`` whose saved state is
O(N·D), the same recompute-instead-of-store trade as FlashAttention (Dao et al. 2022,
https://arxiv.org/abs/2205.14135) and Inf-CL (Cheng et al. 2024, "Breaking the Memory Barrier",
https://arxiv.org/abs/2410.17243). Values and gradients equal the plain losses' up to rounding.

Notation: I (N, D) image features, T (N, D) text features, s the logit scale (a multiplier, already
exponentiated), S = s · I Tᵀ, and blocks S_ab = s · I_a T_bᵀ of the row span a and column span b.

CLIP (symmetric InfoNCE, ``clip_loss`` in contrastive.py):
    loss = (Σ_i (lse_row_i − S_ii) + Σ_j (lse_col_j − S_jj)) / 2N
    2N · ∂loss/∂S = P_row + P_col − 2·Id,   P_row = softmax over j, P_col = softmax over i.
    Forward: one pass over the blocks, each formed once with one exponential per logit, accumulates
    the row and column sums of exp(S) as online (shift, sum) pairs (Milakov & Gimelshein 2018,
    https://arxiv.org/abs/1805.02867): numerically stable for any logit range. Backward: a second
    pass forms each block once more and accumulates G_I += (P_row + P_col − 2·Id)_ab T_b and
    G_T += (…)_abᵀ I_a; then dI = s · G_I / 2N, dT = s · G_T / 2N and, since ∂S/∂s = I Tᵀ,
    ds = Σ I ∘ G_I / 2N without touching a block again. Four N²D matmuls in all (open_clip's
    ClipLoss with autograd does six).

SigLIP (``siglip_loss`` in siglip.py; Zhai et al. 2023, https://arxiv.org/abs/2303.15343):
    loss = Σ_ij −log σ(y_ij · z_ij) / N,   z = S + b,   y = 2·Id − 1,   N · ∂loss/∂z = σ(z) − Id.
    No normalisation couples the blocks, so the gradient is known as soon as a block is formed: when
    autograd records the call, the forward accumulates the gradients in the same pass (three N²D
    matmuls) and the backward only scales them by the incoming gradient.

All arithmetic runs in float32 (float64 stays float64): half-precision features are upcast once
(O(N·D)), the loss comes back in the compute dtype and the gradients in the inputs' dtypes.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; everything else (float32, float16, bfloat16) computes in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def spans(n: int, chunk: int) -> list[tuple[int, int]]:
    """[(0, chunk), (chunk, 2·chunk), …, (·, n)]: the row/column ranges of the blocks."""
    return [(start, min(start + chunk, n)) for start in range(0, n, chunk)]


def _as_scalar(value: Tensor | float, like: Tensor) -> Tensor:
    """A 0-dim tensor of ``like``'s compute dtype and device (a float becomes a constant)."""
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError(f"expected a scalar logit scale/bias, got shape {tuple(value.shape)}")
        return value.detach().reshape(()).to(device=like.device, dtype=compute_dtype(like.dtype))
    return torch.tensor(float(value), device=like.device, dtype=compute_dtype(like.dtype))


Meta = tuple[torch.Size, torch.dtype] | None


def _meta(value: Tensor | float) -> Meta:
    """(shape, dtype) of a tensor input, None for a float: what its gradient must look like."""
    return (value.shape, value.dtype) if isinstance(value, Tensor) else None


def _grad_like(grad: Tensor | None, meta: Meta, needed: bool) -> Tensor | None:
    """``grad`` reshaped and cast to its input's shape and dtype; None when no gradient is needed."""
    if not needed or grad is None or meta is None:
        return None
    return grad.reshape(meta[0]).to(meta[1])


# ---------------------------------------------------------------------------------------------
# CLIP / InfoNCE
# ---------------------------------------------------------------------------------------------


def _merge(m: Tensor, s: Tensor, block_m: Tensor, block_s: Tensor) -> tuple[Tensor, Tensor]:
    """Combine two partial sums Σ exp(x) held as (shift m, Σ exp(x − m)) into one (online softmax)."""
    new_m = torch.maximum(m, block_m)
    return new_m, s * torch.exp(m - new_m) + block_s * torch.exp(block_m - new_m)


class LogSumExps(NamedTuple):
    """Row and column log-sum-exps of the (N, N) logits, each as (shift, sum) so lse = shift + log sum.

    Keeping the shift apart keeps ``lse_i − S_ii`` exact when the positive is the row's maximum (the
    shift is then S_ii itself), as in a plain ``log_softmax``.
    """

    row_shift: Tensor  # (N,)
    row_sum: Tensor  # (N,)
    col_shift: Tensor  # (N,)
    col_sum: Tensor  # (N,)
    diag: Tensor  # (N,) S_ii, taken from the same blocks


def clip_log_sum_exps(img: Tensor, txt: Tensor, scale: Tensor, chunk: int) -> LogSumExps:
    """Row and column log-sum-exps of S = scale · img txtᵀ, each (chunk, chunk) block formed once.

    One exponential per logit: a block is shifted by its row maxima m_i, E = exp(S − m_i), which
    gives the row sums; the column sums come from the same E as wᵀE with w_i = exp(m_i − max m),
    i.e. relative to the block maximum. A column whose every entry lies so far below the block
    maximum that this underflows (sum < e⁻⁶⁰, only possible when logits span > 60) is redone with
    its own maximum, so the result is exact for any logit range. (Checking for such columns costs one
    host sync per block on an accelerator.)

    Args:
        img: (N, D) image features in the compute dtype.
        txt: (N, D) text features, same dtype.
        scale: 0-dim logit scale.
        chunk: block side.

    Returns:
        :class:`LogSumExps` with (N,) row and column shifts and sums and the (N,) diagonal.
    """
    n = img.shape[0]
    row_shift, row_sum = img.new_full((n,), -math.inf), img.new_zeros(n)
    col_shift, col_sum = img.new_full((n,), -math.inf), img.new_zeros(n)
    diag = img.new_empty(n)
    tiny = math.exp(-60.0)
    for r0, r1 in spans(n, chunk):
        a = img[r0:r1] * scale  # (c, D)
        shift, total = row_shift[r0:r1], row_sum[r0:r1]
        for c0, c1 in spans(n, chunk):
            block = a @ txt[c0:c1].T  # (c, c') logits
            if r0 == c0:
                diag[r0:r1] = block.diagonal()
            top_row = block.amax(dim=1)  # (c,)
            exps = (block - top_row[:, None]).exp_()  # (c, c') in (0, 1]
            top = top_row.max()
            col_part = torch.exp(top_row - top) @ exps  # (c',) Σ_i exp(S_ij − top)
            col_top = top.expand_as(col_part)
            low = col_part < tiny
            if bool(low.any()):  # exp underflowed for these columns: use their own maxima
                col_top = torch.where(low, block.amax(dim=0), col_top)
                col_part = torch.where(low, (block - col_top).exp_().sum(dim=0), col_part)
            shift, total = _merge(shift, total, top_row, exps.sum(dim=1))
            col_shift[c0:c1], col_sum[c0:c1] = _merge(col_shift[c0:c1], col_sum[c0:c1], col_top, col_part)
        row_shift[r0:r1], row_sum[r0:r1] = shift, total
    return LogSumExps(row_shift, row_sum, col_shift, col_sum, diag)


def clip_prob_products(
    img: Tensor,
    txt: Tensor,
    scale: Tensor,
    lse_row: Tensor,
    lse_col: Tensor,
    chunk: int,
    *,
    want_img: bool,
    want_txt: bool,
) -> tuple[Tensor | None, Tensor | None]:
    """G_I = (P_row + P_col − 2·Id) T and G_T = (P_row + P_col − 2·Id)ᵀ I, each block formed once.

    2N · ∂loss/∂S = P_row + P_col − 2·Id, so dI = s · G_I / 2N and dT = s · G_T / 2N. Two
    exponentials per logit, exp(S − lse_row) and exp(S − lse_col), both ≤ 1: stable for any range.

    Args:
        img, txt: (N, D) features in the compute dtype.
        scale: 0-dim logit scale.
        lse_row, lse_col: (N,) row and column log-sum-exps of S.
        chunk: block side.
        want_img, want_txt: which of the two products to accumulate.

    Returns:
        (G_I (N, D) or None, G_T (N, D) or None).
    """
    n = img.shape[0]
    g_img = torch.zeros_like(img) if want_img else None
    g_txt = torch.zeros_like(txt) if want_txt else None
    for r0, r1 in spans(n, chunk):
        a = img[r0:r1] * scale  # (c, D)
        row = lse_row[r0:r1, None]  # (c, 1)
        for c0, c1 in spans(n, chunk):
            block = a @ txt[c0:c1].T  # (c, c') logits
            probs = (block - row).exp_()  # P_row block
            probs += block.sub_(lse_col[None, c0:c1]).exp_()  # + P_col block
            if r0 == c0:
                probs.diagonal().sub_(2.0)
            if g_img is not None:
                g_img[r0:r1].addmm_(probs, txt[c0:c1])
            if g_txt is not None:
                g_txt[c0:c1].addmm_(probs.T, img[r0:r1])
    return g_img, g_txt


class ChunkedClipLoss(torch.autograd.Function):
    """Symmetric InfoNCE over (chunk, chunk) blocks; saves only I, T, s and the two (N,) log-sum-exps."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, image_features: Tensor, text_features: Tensor, logit_scale: Tensor | float, chunk: int
    ) -> Tensor:
        """(N, D), (N, D), scalar, int → scalar loss in the compute dtype."""
        dtype = compute_dtype(image_features.dtype)
        img, txt = image_features.to(dtype), text_features.to(dtype)
        scale = _as_scalar(logit_scale, img)
        n = img.shape[0]
        with torch.autocast(img.device.type, enabled=False):
            lse = clip_log_sum_exps(img, txt, scale, chunk)
            log_row_sum, log_col_sum = lse.row_sum.log(), lse.col_sum.log()
            # Σ_i (lse_row_i − S_ii) + Σ_j (lse_col_j − S_jj), shifts first: exact when S_ii is the max
            # (each term is ≥ 0 exactly; the clamp drops rounding below it)
            row_terms = ((lse.row_shift - lse.diag) + log_row_sum).clamp_min_(0)
            col_terms = ((lse.col_shift - lse.diag) + log_col_sum).clamp_min_(0)
            terms = row_terms.sum() + col_terms.sum()
            loss = terms / (2 * n)
            lse_row, lse_col = lse.row_shift + log_row_sum, lse.col_shift + log_col_sum
        ctx.save_for_backward(img, txt, scale, lse_row, lse_col)
        ctx.chunk = chunk
        ctx.metas = [_meta(v) for v in (image_features, text_features, logit_scale)]
        return loss

    @staticmethod
    def backward(ctx: Any, grad_loss: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        """Recompute each block once; return (dI, dT, d scale, None)."""
        img, txt, scale, lse_row, lse_col = ctx.saved_tensors
        need_img, need_txt, need_scale = ctx.needs_input_grad[:3]
        n = img.shape[0]
        with torch.autocast(img.device.type, enabled=False):
            g_img, g_txt = clip_prob_products(
                img,
                txt,
                scale,
                lse_row,
                lse_col,
                ctx.chunk,
                want_img=need_img or (need_scale and not need_txt),
                want_txt=need_txt,
            )
            factor = grad_loss.to(img.dtype) / (2 * n)
            d_scale = None
            if need_scale:
                # ∂S/∂s = I Tᵀ, and Σ_ij X_ij (I_i·T_j) = Σ I ∘ (X T) = Σ T ∘ (Xᵀ I)
                pairs = (img * g_img).sum() if g_img is not None else (txt * g_txt).sum()  # type: ignore[operator]
                d_scale = pairs * factor
            # the accumulators turn into the gradients in place: no extra (N, D) copies
            d_img = g_img.mul_(scale * factor) if need_img and g_img is not None else None
            d_txt = g_txt.mul_(scale * factor) if need_txt and g_txt is not None else None
        grads = (d_img, d_txt, d_scale)
        needs = (need_img, need_txt, need_scale)
        return (*(_grad_like(g, m, need) for g, m, need in zip(grads, ctx.metas, needs, strict=True)), None)


def chunked_clip_loss(
    image_features: Tensor, text_features: Tensor, logit_scale: Tensor | float, chunk_size: int
) -> Tensor:
    """Symmetric InfoNCE computed in (chunk_size, chunk_size) blocks; see the module docstring.

    Args:
        image_features: (N, D) image embeddings (any float dtype).
        text_features: (N, D) text embeddings; row i is the caption of image i.
        logit_scale: the multiplier (already exponentiated), a scalar tensor or float.
        chunk_size: block side; peak extra memory ≈ 3 · chunk_size² floats plus O(N·D).

    Returns:
        Scalar loss (float32, or float64 for float64 inputs), differentiable w.r.t. all three inputs.
    """
    return ChunkedClipLoss.apply(image_features, text_features, logit_scale, chunk_size)


# ---------------------------------------------------------------------------------------------
# SigLIP
# ---------------------------------------------------------------------------------------------


def siglip_blocks(
    img: Tensor,
    txt: Tensor,
    scale: Tensor,
    bias: Tensor,
    chunk: int,
    *,
    want_img: bool = False,
    want_txt: bool = False,
    want_sum: bool = False,
) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor | None]:
    """N · loss and, when asked, the gradient products, each (chunk, chunk) block formed once.

    With z = S + b and labels y = 2·Id − 1, the loss sum is Σ_ij −log σ(y_ij z_ij) and
    N · ∂loss/∂z = σ(z) − Id. Both are computed on the block with its diagonal negated (the
    positives), so neither needs a subtraction that would cancel digits: −log σ(−z') sums to the loss
    and σ(z') with its diagonal negated back is σ(z) − Id.

    Args:
        img, txt: (N, D) features in the compute dtype.
        scale, bias: 0-dim logit scale and bias.
        chunk: block side.
        want_img, want_txt, want_sum: also accumulate G_I = (σ(z) − Id) T, G_T = (σ(z) − Id)ᵀ I and
            Σ_ij (σ(z) − Id)_ij, respectively.

    Returns:
        (Σ_ij −log σ(y_ij z_ij) (), G_I (N, D) | None, G_T (N, D) | None, Σ (σ − Id) () | None).
    """
    n = img.shape[0]
    total = img.new_zeros(())
    g_img = torch.zeros_like(img) if want_img else None
    g_txt = torch.zeros_like(txt) if want_txt else None
    g_sum = img.new_zeros(()) if want_sum else None
    for r0, r1 in spans(n, chunk):
        a = img[r0:r1] * scale  # (c, D)
        for c0, c1 in spans(n, chunk):
            logits = (a @ txt[c0:c1].T).add_(bias)  # (c, c') z
            if r0 == c0:
                logits.diagonal().neg_()  # positives: −y·z
            total -= F.logsigmoid(logits.neg_()).sum()  # flipped in place: −z'
            if g_img is None and g_txt is None and g_sum is None:
                continue
            coef = logits.neg_().sigmoid_()  # σ(z') = σ(z) off the diagonal, 1 − σ(z) on it
            if r0 == c0:
                coef.diagonal().neg_()  # σ(z) − 1 on the diagonal
            if g_img is not None:
                g_img[r0:r1].addmm_(coef, txt[c0:c1])
            if g_txt is not None:
                g_txt[c0:c1].addmm_(coef.T, img[r0:r1])
            if g_sum is not None:
                g_sum += coef.sum()
    return total, g_img, g_txt, g_sum


class ChunkedSigLipLoss(torch.autograd.Function):
    """SigLIP's sigmoid loss over (chunk, chunk) blocks; the gradients are formed in the forward pass.

    Saved for backward: dI, dT (N, D) and the two scalar gradients, i.e. O(N·D).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        image_features: Tensor,
        text_features: Tensor,
        logit_scale: Tensor | float,
        logit_bias: Tensor | float,
        chunk: int,
    ) -> Tensor:
        """(N, D), (N, D), scalar, scalar, int → scalar loss in the compute dtype."""
        dtype = compute_dtype(image_features.dtype)
        img, txt = image_features.to(dtype), text_features.to(dtype)
        scale, bias = _as_scalar(logit_scale, img), _as_scalar(logit_bias, img)
        n = img.shape[0]
        need_img, need_txt, need_scale, need_bias = ctx.needs_input_grad[:4]
        with torch.autocast(img.device.type, enabled=False):
            total, g_img, g_txt, g_sum = siglip_blocks(
                img,
                txt,
                scale,
                bias,
                chunk,
                want_img=need_img or (need_scale and not need_txt),
                want_txt=need_txt,
                want_sum=need_bias,
            )
            empty = img.new_empty(0)  # stands in for the gradients nobody asked for
            d_scale = d_bias = empty
            if need_scale:  # Σ_ij ∂loss/∂z_ij · (I_i·T_j) = Σ I ∘ G_I / N = Σ T ∘ G_T / N
                pairs = (img * g_img).sum() if g_img is not None else (txt * g_txt).sum()  # type: ignore[operator]
                d_scale = pairs / n
            if need_bias and g_sum is not None:
                d_bias = g_sum / n
            # the accumulators turn into the gradients in place: no extra (N, D) copies
            d_img = g_img.mul_(scale / n) if need_img and g_img is not None else empty
            d_txt = g_txt.mul_(scale / n) if need_txt and g_txt is not None else empty
        ctx.save_for_backward(d_img, d_txt, d_scale, d_bias)
        ctx.metas = [_meta(v) for v in (image_features, text_features, logit_scale, logit_bias)]
        return total / n

    @staticmethod
    def backward(ctx: Any, grad_loss: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        """Scale the gradients stored by the forward pass: (dI, dT, d scale, d bias, None)."""
        saved = ctx.saved_tensors
        grad_loss = grad_loss.to(saved[0].dtype)
        needs = ctx.needs_input_grad[:4]
        grads = [
            _grad_like(g * grad_loss, m, need) for g, m, need in zip(saved, ctx.metas, needs, strict=True)
        ]
        return (*grads, None)


def chunked_siglip_loss(
    image_features: Tensor,
    text_features: Tensor,
    logit_scale: Tensor | float,
    logit_bias: Tensor | float,
    chunk_size: int,
) -> Tensor:
    """SigLIP's sigmoid loss computed in (chunk_size, chunk_size) blocks; see the module docstring.

    Args:
        image_features: (N, D) image embeddings (any float dtype).
        text_features: (N, D) text embeddings; row i is the caption of image i.
        logit_scale: the multiplier (already exponentiated), a scalar tensor or float.
        logit_bias: the additive logit bias, a scalar tensor or float.
        chunk_size: block side; peak extra memory ≈ 2 · chunk_size² floats plus O(N·D).

    Returns:
        Scalar loss (float32, or float64 for float64 inputs). When autograd records the call, the
        forward also computes the gradients (so calling it without ever calling backward costs a
        third more than a loss-only forward; wrap evaluation in ``torch.no_grad()``).
    """
    args = [v if isinstance(v, Tensor) else float(v) for v in (logit_scale, logit_bias)]
    recorded = torch.is_grad_enabled() and any(
        isinstance(v, Tensor) and v.requires_grad for v in (image_features, text_features, *args)
    )
    if recorded:
        return ChunkedSigLipLoss.apply(image_features, text_features, *args, chunk_size)
    dtype = compute_dtype(image_features.dtype)
    img, txt = image_features.to(dtype), text_features.to(dtype)
    scale, bias = _as_scalar(logit_scale, img), _as_scalar(logit_bias, img)
    with torch.autocast(img.device.type, enabled=False):
        return siglip_blocks(img, txt, scale, bias, chunk_size)[0] / img.shape[0]
