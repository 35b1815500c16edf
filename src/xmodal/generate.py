"""Decoding for every xmodal text generator: greedy search and beam search with a length penalty.

Both work on a ``step(tokens, state) -> logits`` function: ``tokens`` (B, t) int64 is the prefix so far
(the prompt, then what was generated), ``state`` is whatever the model conditions on with the batch
first (a tensor, or a tuple / list / dict of them, e.g. cross-attention memory (B, N, D)), and the result
is (B, V) next-token logits. :func:`decoder_step` makes one from a module with
``forward(input_ids, encoder_hidden_states)`` (xmodal's captioner, a ``transformers`` decoder). The whole
prefix is re-run each step (no key/value cache): simple, exact, and cheap at caption lengths.

Beam search keeps the ``beam_size`` best prefixes by summed log-probability. Each step it extends every
live prefix by every token and keeps the ``beam_size`` best candidates; a kept candidate that ends in
``eos`` is finished, the others stay live, so the beam shrinks as hypotheses finish (with
``beam_size=1`` this is exactly greedy search, tested). Finished hypotheses (and the live ones at
``max_new_tokens``) are ranked by ``log p / lp(len)`` with GNMT's length penalty
``lp(len) = ((5 + len) / 6) ** alpha`` (Wu et al. 2016, https://arxiv.org/abs/1609.08144, eq. 14), where
``len`` counts the generated tokens including ``eos``; ``alpha = 0`` ranks by raw log-probability.
(Hugging Face divides by ``len ** alpha`` instead; the two agree in ranking at ``alpha = 0`` only.)
The search stops early only when no live prefix can still beat the best finished one (for ``alpha >= 0``
a prefix's score can at best become ``log p / lp(max_new_tokens)``), so with a beam as wide as all
sequences it returns the exhaustive optimum (tested).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

StepFn = Callable[[Tensor, Any], Tensor]


@dataclass
class Generation:
    """Decoded sequences, one per prompt.

    Attributes:
        tokens: generated token ids per prompt (prompt and ``eos`` excluded).
        scores: the length-penalised log-probability of each (greedy: the plain sum of log-probabilities).
        finished: whether each ended with ``eos`` (False: cut at ``max_new_tokens``).
    """

    tokens: list[list[int]]
    scores: list[float]
    finished: list[bool]


def length_penalty(length: int, alpha: float) -> float:
    """GNMT's ``((5 + length) / 6) ** alpha`` (1 for a single token or ``alpha = 0``)."""
    return ((5.0 + length) / 6.0) ** alpha


def expand_state(state: Any, index: Tensor) -> Any:
    """``state`` with its batch dimension indexed by ``index`` (tensors, nested tuples/lists/dicts, None)."""
    if state is None:
        return None
    if isinstance(state, Tensor):
        return state.index_select(0, index.to(state.device))
    if isinstance(state, dict):
        return {k: expand_state(v, index) for k, v in state.items()}
    if isinstance(state, tuple | list):
        return type(state)(expand_state(v, index) for v in state)
    raise TypeError(f"cannot index a generation state of type {type(state).__name__}")


def decoder_step(model: nn.Module, **kwargs: Any) -> StepFn:
    """A step function from a module called as ``model(input_ids=..., encoder_hidden_states=..., **kwargs)``.

    The state is the encoder memory (B, N, D), or a dict of keyword arguments (``{"encoder_hidden_states":
    ..., "encoder_attention_mask": ...}``). The output may be a tensor (B, t, V) or have ``.logits``.
    """

    def step(tokens: Tensor, state: Any) -> Tensor:
        extra = state if isinstance(state, dict) else {"encoder_hidden_states": state}
        out = model(input_ids=tokens, **extra, **kwargs)
        logits = out if isinstance(out, Tensor) else out.logits
        return logits[:, -1]

    return step


def stop_ids(eos: int | Sequence[int]) -> frozenset[int]:
    """The ids that end a sequence: one, or several (e.g. eos and Flamingo's ``<|endofchunk|>``)."""
    return frozenset([eos] if isinstance(eos, int) else eos)


@torch.no_grad()
def greedy_search(
    step: StepFn, state: Any, prompt: Tensor, *, eos: int | Sequence[int], max_new_tokens: int
) -> Generation:
    """The most likely next token, each step, until ``eos`` or ``max_new_tokens``.

    Args:
        step: the model (see the module docstring).
        state: conditioning with batch first (B, ...).
        prompt: (B, t0) int64 start tokens (at least one per row, the same length for all rows).
        eos: the end-of-sequence id, or several ids that each end a sequence.
        max_new_tokens: the most tokens generated per row (``eos`` included).
    """
    stops = stop_ids(eos)
    fill = min(stops)
    B = prompt.shape[0]
    tokens = prompt
    live = torch.ones(B, dtype=torch.bool)
    out: list[list[int]] = [[] for _ in range(B)]
    scores = [0.0] * B
    finished = [False] * B
    for _ in range(max_new_tokens):
        rows = live.nonzero().squeeze(1)
        logp = step(tokens[rows], expand_state(state, rows)).float().log_softmax(-1)  # (b, V)
        best_lp, best = logp.max(-1)
        nxt = torch.full((B,), fill, dtype=torch.long)
        nxt[rows] = best.cpu()
        for r, tok, lp in zip(rows.tolist(), best.tolist(), best_lp.tolist(), strict=True):
            scores[r] += lp
            if tok in stops:
                finished[r] = True
                live[r] = False
            else:
                out[r].append(tok)
        tokens = torch.cat([tokens, nxt[:, None].to(tokens.device)], dim=1)
        if not live.any():
            break
    return Generation(out, scores, finished)


@torch.no_grad()
def beam_search(
    step: StepFn,
    state: Any,
    prompt: Tensor,
    *,
    eos: int | Sequence[int],
    max_new_tokens: int,
    beam_size: int = 4,
    alpha: float = 0.0,
) -> Generation:
    """Beam search with GNMT's length penalty (see the module docstring for the exact rules).

    Args:
        step, state, prompt, eos, max_new_tokens: as :func:`greedy_search`.
        beam_size: prefixes kept per prompt (1 is greedy search).
        alpha: length-penalty exponent (0: none; about 0.6–1 favours longer outputs).

    Returns:
        The best hypothesis per prompt, its penalised score and whether it ended with ``eos``.
    """
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    stops = stop_ids(eos)
    B, K = prompt.shape[0], beam_size
    rows = torch.arange(B).repeat_interleave(K)  # slot b*K + k belongs to prompt b
    tokens = prompt.repeat_interleave(K, dim=0)  # (B*K, t)
    st = expand_state(state, rows)
    cum = torch.full((B, K), -math.inf)
    cum[:, 0] = 0.0  # one real prefix per prompt at the start
    best: list[tuple[float, list[int], bool] | None] = [None] * B
    bound_lp = length_penalty(max_new_tokens, alpha)
    for t in range(1, max_new_tokens + 1):
        alive = torch.isfinite(cum).view(-1).nonzero().squeeze(1)
        step_logp = step(tokens[alive], expand_state(st, alive)).float().log_softmax(-1).cpu()  # (a, V)
        V = step_logp.shape[1]
        logp = torch.full((B * K, V), -math.inf)
        logp[alive] = step_logp
        cand = (cum.view(-1, 1) + logp).view(B, K * V)  # (B, K*V) summed log-probabilities
        top, idx = cand.topk(min(K, K * V), dim=1)  # (B, K)
        src, tok = idx // V, idx % V  # which slot each candidate extends, with which token
        new_cum = torch.full((B, K), -math.inf)
        lp_t = length_penalty(t, alpha)
        for b in range(B):
            for k in range(top.shape[1]):
                s = float(top[b, k])
                if not math.isfinite(s):
                    continue
                prefix = tokens[b * K + int(src[b, k]), prompt.shape[1] :].tolist()
                ends = int(tok[b, k]) in stops
                if ends or t == max_new_tokens:
                    hyp = (s / lp_t, prefix if ends else [*prefix, int(tok[b, k])], ends)
                    if best[b] is None or hyp[0] > best[b][0]:  # type: ignore[index]
                        best[b] = hyp
                else:
                    new_cum[b, k] = s
        parent = (torch.arange(B)[:, None] * K + src).view(-1).to(tokens.device)  # (B*K,)
        tokens = torch.cat([tokens[parent], tok.view(-1, 1).to(tokens.device)], dim=1)
        for b in range(B):  # exact early stop: no live prefix can beat the best finished one
            b_best = best[b]
            if b_best is not None and alpha >= 0 and float(new_cum[b].max()) / bound_lp <= b_best[0]:
                new_cum[b] = -math.inf
        cum = new_cum
        if not torch.isfinite(cum).any():
            break
    done = [h if h is not None else (-math.inf, [], False) for h in best]
    return Generation([h[1] for h in done], [h[0] for h in done], [h[2] for h in done])
