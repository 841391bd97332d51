"""How likely a model finds the replies of held-out conversations: the log-likelihood of each
assistant turn given the conversation before it, with the model's own chat template.

Perplexity is ``exp`` of the mean negative log-likelihood per reply token. Only reply tokens
count (the end-of-turn token included: ending a reply is part of it); the prompt is context.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import numpy as np

from forgeline.errors import DataError
from forgeline.tasks.base import ChatMessage
from forgeline.tasks.chat._native import ContextSettings, NativeContext, NativeModel
from forgeline.tasks.chat.prompting import ChatTemplate, reply_spans

_BATCH = 512


@dataclass(frozen=True)
class ReplyScore:
    negative_log_likelihood: float
    tokens: int


class Scorer:
    """Teacher-forced scoring on one llama.cpp sequence (the engine's batching buys nothing
    here: each conversation is one long prefill)."""

    def __init__(self, model_path: Path, context_tokens: int, threads: int | None = None) -> None:
        self._model = NativeModel(model_path)
        try:
            template = self._model.chat_template()
            if template is None:
                raise DataError(f"{model_path}: the GGUF has no chat template to score with")
            self._template = ChatTemplate(
                template, bos_token=self._model.bos_token, eos_token=self._model.eos_token
            )
            self.context_tokens = context_tokens
            self._context = NativeContext(
                self._model,
                ContextSettings(
                    n_ctx_per_sequence=context_tokens,
                    parallel=1,
                    threads=threads or len(os.sched_getaffinity(0)),
                    n_batch=_BATCH,
                    n_ubatch=_BATCH,
                ),
            )
        except BaseException:
            self._model.free()
            raise

    def close(self) -> None:
        self._context.free()
        self._model.free()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _tokens(self, text: str) -> list[int]:
        return self._model.tokenize(text, add_special=False, parse_special=True)

    def reply_spans(self, messages: Sequence[ChatMessage]) -> tuple[list[int], list[range]]:
        """The conversation's tokens and, per assistant turn, the positions of its tokens."""
        return reply_spans(self._template, self._tokens, messages)

    def score(self, messages: Sequence[ChatMessage], source: str) -> ReplyScore:
        """The summed negative log-likelihood of the conversation's replies, and their count."""
        tokens, spans = self.reply_spans(messages)
        if len(tokens) > self.context_tokens:
            raise DataError(
                f"{source}: the conversation has {len(tokens)} tokens, more than "
                f"engine.context_tokens ({self.context_tokens}); it is not cut, so shorten it "
                "or raise the context"
            )
        # The logits at position t predict token t + 1.
        wanted = {position - 1 for span in spans for position in span if position > 0}
        nll, count = 0.0, 0
        context = self._context
        context.forget_sequence(0)
        for start in range(0, len(tokens), _BATCH):
            chunk = tokens[start : start + _BATCH]
            context.clear_batch()
            outputs = {}
            for offset, token in enumerate(chunk):
                position = start + offset
                index = context.add_to_batch(token, position, 0, output=position in wanted)
                if position in wanted:
                    outputs[position] = index
            context.decode()
            for position, index in outputs.items():
                logits = context.logits(index, self._model.n_vocab).astype(np.float64)
                top = float(logits.max())
                log_total = top + math.log(float(np.exp(logits - top).sum()))
                nll += log_total - float(logits[tokens[position + 1]])
                count += 1
        context.forget_sequence(0)
        return ReplyScore(nll, count)
