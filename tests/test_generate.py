"""Tests for xmodal.generate: beam search = exhaustive search with a wide beam, beam 1 = greedy, EOS."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from xmodal.generate import beam_search, decoder_step, expand_state, greedy_search, length_penalty

V, EOS = 4, 0


class ToyDecoder(nn.Module):
    """Next-token logits from the last two tokens, the position and a per-row memory vector."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.last = nn.Parameter(2 * torch.randn(V + 1, V, generator=g))
        self.prev = nn.Parameter(torch.randn(V + 1, V, generator=g))
        self.pos = nn.Parameter(torch.randn(8, V, generator=g))

    def forward(self, input_ids: torch.Tensor, encoder_hidden_states: torch.Tensor) -> torch.Tensor:
        B, T = input_ids.shape
        logits = []
        for t in range(T):
            prev = input_ids[:, t - 1] if t > 0 else torch.full((B,), V)
            logits.append(
                self.last[input_ids[:, t]] + self.prev[prev] + self.pos[t] + encoder_hidden_states[:, 0]
            )
        return torch.stack(logits, 1)  # (B, T, V)


def sequence_logp(model, memory, prompt, seq):
    ids = torch.tensor([[*prompt, *seq]])
    with torch.no_grad():
        logp = model(ids, memory[None]).log_softmax(-1)[0]
    return sum(float(logp[len(prompt) - 1 + i, tok]) for i, tok in enumerate(seq))


def exhaustive(model, memory, prompt, max_new, alpha):
    """Every sequence: ending in EOS within max_new tokens, or max_new non-EOS tokens."""
    best = (-math.inf, None)
    for n in range(1, max_new + 1):
        for body in itertools.product(range(1, V), repeat=n - 1):
            candidates = [[*body, EOS]] + ([[*body, t] for t in range(1, V)] if n == max_new else [])
            for seq in candidates:
                score = sequence_logp(model, memory, prompt, seq) / length_penalty(len(seq), alpha)
                if score > best[0]:
                    out = seq[:-1] if seq[-1] == EOS else seq
                    best = (score, out)
    return best


@pytest.mark.parametrize("alpha", [0.0, 0.7, 2.0])
def test_wide_beam_equals_exhaustive_search(alpha):
    max_new = 3
    for seed in range(4):
        model = ToyDecoder(seed)
        memory = torch.randn(3, 1, V, generator=torch.Generator().manual_seed(100 + seed))
        prompt = torch.tensor([[1], [2], [3]])
        gen = beam_search(
            decoder_step(model),
            memory,
            prompt,
            eos=EOS,
            max_new_tokens=max_new,
            beam_size=V**max_new,
            alpha=alpha,
        )
        for b in range(3):
            score, seq = exhaustive(model, memory[b], prompt[b].tolist(), max_new, alpha)
            assert gen.tokens[b] == seq, (seed, b)
            assert gen.scores[b] == pytest.approx(score, abs=1e-5)


def test_beam_one_is_greedy_and_wider_beams_score_at_least_as_well():
    for seed in range(10):
        model = ToyDecoder(seed)
        memory = torch.randn(5, 1, V, generator=torch.Generator().manual_seed(seed))
        prompt = torch.randint(1, V, (5, 2), generator=torch.Generator().manual_seed(seed))
        greedy = greedy_search(decoder_step(model), memory, prompt, eos=EOS, max_new_tokens=6)
        beam1 = beam_search(decoder_step(model), memory, prompt, eos=EOS, max_new_tokens=6, beam_size=1)
        assert beam1.tokens == greedy.tokens and beam1.finished == greedy.finished
        assert beam1.scores == pytest.approx(greedy.scores, abs=1e-5)
        beam3 = beam_search(decoder_step(model), memory, prompt, eos=EOS, max_new_tokens=6, beam_size=3)
        assert all(s3 >= s1 - 1e-6 for s3, s1 in zip(beam3.scores, greedy.scores, strict=True))


def test_greedy_stops_at_eos_and_at_max_length():
    class Fixed(nn.Module):
        """Always prefers token 2 until position 3, then EOS."""

        def forward(self, input_ids, encoder_hidden_states):
            B, T = input_ids.shape
            logits = torch.zeros(B, T, V)
            logits[:, :, 2] = 5.0
            logits[:, 3:, EOS] = 10.0
            return logits

    step = decoder_step(Fixed())
    gen = greedy_search(
        step, torch.zeros(2, 1, 1), torch.ones(2, 1, dtype=torch.long), eos=EOS, max_new_tokens=10
    )
    assert gen.tokens == [[2, 2, 2], [2, 2, 2]] and gen.finished == [True, True]
    cut = greedy_search(
        step, torch.zeros(1, 1, 1), torch.ones(1, 1, dtype=torch.long), eos=EOS, max_new_tokens=2
    )
    assert cut.tokens == [[2, 2]] and cut.finished == [False]
    beam = beam_search(
        step, None, torch.ones(1, 1, dtype=torch.long), eos=EOS, max_new_tokens=10, beam_size=2
    )
    assert beam.tokens == [[2, 2, 2]] and beam.finished == [True]


def test_any_of_several_stop_ids_ends_a_sequence():
    class TwoStops(nn.Module):
        """Token 2, then (from position 2) stop id 3 after prompt [1] and stop id EOS after prompt [2]."""

        def forward(self, input_ids, encoder_hidden_states):
            B, T = input_ids.shape
            logits = torch.zeros(B, T, V)
            logits[:, :, 2] = 5.0
            first = input_ids[:, 0]
            logits[first == 1, 2:, 3] = 10.0
            logits[first == 2, 2:, EOS] = 10.0
            return logits

    step, prompt = decoder_step(TwoStops()), torch.tensor([[1], [2]])
    for search in (greedy_search, beam_search):
        gen = search(step, torch.zeros(2, 1, 1), prompt, eos=[3, EOS], max_new_tokens=10)
        assert gen.tokens == [[2, 2], [2, 2]] and gen.finished == [True, True], search
        only = search(step, torch.zeros(2, 1, 1), prompt, eos=3, max_new_tokens=4)
        assert only.finished == [True, False] and only.tokens[1] == [2, 2, EOS, EOS]


def test_length_penalty_and_state_expansion():
    assert length_penalty(1, 0.7) == 1.0 and length_penalty(7, 1.0) == 2.0 and length_penalty(9, 0.0) == 1.0
    state = {"a": torch.arange(3), "b": (torch.arange(6).view(3, 2), None)}
    out = expand_state(state, torch.tensor([2, 2, 0]))
    assert out["a"].tolist() == [2, 2, 0] and out["b"][0].tolist() == [[4, 5], [4, 5], [0, 1]]
    with pytest.raises(TypeError):
        expand_state("nope", torch.tensor([0]))
    with pytest.raises(ValueError):
        beam_search(
            lambda t, s: t, None, torch.ones(1, 1, dtype=torch.long), eos=0, max_new_tokens=1, beam_size=0
        )
