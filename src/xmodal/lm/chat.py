"""Chat template and answer-only labels for instruction tuning (LLaVA, Liu et al. 2023,
https://arxiv.org/abs/2304.08485; the LLaVA-1.5 "vicuna_v1" format, https://arxiv.org/abs/2310.03744).

A conversation is a list of ``{"role": "user" | "assistant" | "system", "content": str}``; an image is the
``<image>`` placeholder inside a user turn. The text is rendered by the tokenizer's own
``chat_template`` when its folder has one, else by xmodal's default, :data:`DEFAULT_CHAT_TEMPLATE`::

    USER: <image>\\nWhat is shown? ASSISTANT: a grinning face</s>

(``</s>`` stands for the tokenizer's eos token). Loss falls on the assistant turns only: each is the text
that rendering ``messages[:i + 1]`` adds to rendering ``messages[:i]`` with the generation prompt; the
segments are tokenised one by one, so a label is an answer token exactly when its segment is an answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from xmodal.errors import XmodalError
from xmodal.lm.sequences import IGNORE_INDEX

DEFAULT_CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ m['content'] }}\n"
    "{% elif m['role'] == 'user' %}USER: {{ m['content'] }} "
    "{% elif m['role'] == 'assistant' %}ASSISTANT: {{ m['content'] }}{{ eos_token }}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def ensure_chat_template(tokenizer: Any) -> str:
    """The tokenizer's chat template; xmodal's default is installed on it when it has none."""
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
    return str(tokenizer.chat_template)


def render(tokenizer: Any, messages: list[dict[str, str]], *, add_generation_prompt: bool = False) -> str:
    """The conversation as text through the tokenizer's chat template (xmodal's default if none)."""
    ensure_chat_template(tokenizer)
    text = tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt
    )
    return str(text)


def chat_segments(tokenizer: Any, messages: list[dict[str, str]]) -> list[tuple[str, bool]]:
    """The rendered conversation cut into (text, is_answer) pieces, in order.

    Raises:
        XmodalError: a template whose rendering of a prefix of the conversation is not a prefix of the
            whole (answer spans could not be located).
    """
    segments: list[tuple[str, bool]] = []
    done = ""
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = render(tokenizer, messages[:i], add_generation_prompt=True)
        upto = render(tokenizer, messages[: i + 1])
        if not (before.startswith(done) and upto.startswith(before)):
            raise XmodalError(
                "the tokenizer's chat template does not render conversations prefix by prefix; "
                "answer tokens cannot be located (set tokenizer.chat_template to one that does)"
            )
        segments += [(before[len(done) :], False), (upto[len(before) :], True)]
        done = upto
    rest = render(tokenizer, messages)
    if not rest.startswith(done):
        raise XmodalError("the tokenizer's chat template renders the conversation inconsistently")
    segments.append((rest[len(done) :], False))
    return [(t, a) for t, a in segments if t]


@dataclass
class Encoded:
    """One tokenised conversation: ``labels[i]`` is ``input_ids[i]`` inside answers, -100 elsewhere."""

    input_ids: list[int] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)


def _bos(tokenizer: Any, text: str) -> list[int]:
    bos = getattr(tokenizer, "bos_token", None)
    if bos is None or tokenizer.bos_token_id is None or text.startswith(bos):
        return []
    return [int(tokenizer.bos_token_id)]


def encode_chat(tokenizer: Any, messages: list[dict[str, str]]) -> Encoded:
    """Token ids of a conversation and its labels (loss on assistant turns only).

    A bos token is prepended when the tokenizer has one and the template does not write it.
    """
    segments = chat_segments(tokenizer, messages)
    first = segments[0][0] if segments else ""
    out = Encoded()
    out.input_ids += _bos(tokenizer, first)
    out.labels += [IGNORE_INDEX] * len(out.input_ids)
    for text, is_answer in segments:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        out.input_ids += ids
        out.labels += list(ids) if is_answer else [IGNORE_INDEX] * len(ids)
    return out


def encode_prompt(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of a conversation ending in a user turn, plus the generation prompt (for ``generate``)."""
    text = render(tokenizer, messages, add_generation_prompt=True)
    return _bos(tokenizer, text) + list(tokenizer(text, add_special_tokens=False)["input_ids"])


def user_turn(question: str, *, image: bool = True) -> dict[str, str]:
    """A user message, with the ``<image>`` placeholder on its own line first when ``image``."""
    from xmodal.lm.loading import IMAGE_TOKEN

    return {"role": "user", "content": f"{IMAGE_TOKEN}\n{question}" if image else question}
