"""What callers hand the generation engine, what they get back, and how it refuses work."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from forgeline.errors import InputError

FinishReason = Literal["stop", "length", "cancelled"]
"""Why a sequence ended: an end-of-generation token or stop string, ``max_tokens``, or the
caller went away."""

MAX_SEED = 2**32 - 2
"""llama.cpp reads seed ``2**32 - 1`` as "pick a random seed", so that value is not accepted."""


@dataclass(frozen=True)
class GenerationRequest:
    """One completion to generate.

    ``prompt`` is either text (tokenized with the model's own special tokens, e.g. a prompt
    made by :meth:`GenerationEngine.chat_prompt`) or token ids. ``temperature`` 0 means greedy
    decoding. ``seed`` makes sampling reproducible, also when other requests share the batch;
    ``None`` picks a random one. ``grammar`` is GBNF text (see :func:`json_grammar`) that the
    output must follow.
    """

    prompt: str | Sequence[int]
    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: Sequence[str] = field(default_factory=tuple)
    grammar: str | None = None

    def check(self) -> None:
        """Raise :class:`InputError` naming the first field that is out of range."""
        if self.max_tokens < 1:
            raise InputError(f"max_tokens must be at least 1, got {self.max_tokens}")
        if self.temperature < 0:
            raise InputError(f"temperature must be 0 or more, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise InputError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.seed is not None and not 0 <= self.seed <= MAX_SEED:
            raise InputError(f"seed must be in [0, {MAX_SEED}], got {self.seed}")
        if len(self.prompt) == 0:
            raise InputError("the prompt is empty")


@dataclass(frozen=True)
class TextChunk:
    """Newly generated text: whole characters, never part of a stop string."""

    text: str
    completion_tokens: int = 0
    """Tokens generated so far, this chunk's included (what sending it delivers, for metering)."""


@dataclass(frozen=True)
class Finished:
    """The last event of a stream, with what the request used (for metering)."""

    prompt_tokens: int
    completion_tokens: int
    finish_reason: FinishReason
    time_to_first_token: float | None
    """Seconds from submission to the first sampled token; ``None`` if none was sampled."""


GenerationEvent = TextChunk | Finished


class EngineOverloaded(Exception):
    """Every sequence slot is busy and the waiting queue is full; the caller should retry."""


class EngineClosed(Exception):
    """The engine was closed, or its decode thread failed, so it cannot take or finish work."""


class ContextLengthExceeded(InputError):
    """The prompt plus ``max_tokens`` would not fit in one sequence's context window."""

    def __init__(self, prompt_tokens: int, max_tokens: int, limit: int) -> None:
        super().__init__(
            f"the prompt has {prompt_tokens} tokens and max_tokens is {max_tokens}: "
            f"{prompt_tokens + max_tokens} tokens do not fit the context of {limit} tokens "
            f"per request; shorten the prompt or lower max_tokens"
        )
        self.prompt_tokens = prompt_tokens
        self.max_tokens = max_tokens
        self.limit = limit
