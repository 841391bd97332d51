"""The ``n`` choices of one OpenAI-style generation request, run together on the engine.

Shared by the plain and the streamed replies of :mod:`forgeline.serve.openai`: builds the
engine requests from the body and the model's defaults (a ``response_format`` becomes a
grammar), merges the choices' events, and counts what they used. For a model that redacts
its inputs, each choice's text has the request's placeholders restored as it comes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from forgeline.serve.errors import ApiError
from forgeline.serve.openai_schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    FinishReason,
    JsonObjectFormat,
    JsonSchemaResponseFormat,
    Usage,
)
from forgeline.tasks.base import Generator
from forgeline.tasks.chat.prompting import json_grammar
from forgeline.tasks.generation import Finished, GenerationEvent, GenerationRequest, TextChunk

if TYPE_CHECKING:
    from forgeline.privacy.placeholders import Placeholders, Restorer

GenerationBody = ChatCompletionRequest | CompletionRequest


class EventStream(Protocol):
    """What a choice reads its events from: the engine's stream, or a reply said as it is."""

    def __aiter__(self) -> AsyncIterator[GenerationEvent]: ...

    def cancel(self) -> None: ...


class _Said:
    """A reply given without generating (e.g. a knowledge base's fallback): one chunk, then
    the end, with no tokens used."""

    def __init__(self, text: str) -> None:
        self.text = text

    async def __aiter__(self) -> AsyncIterator[GenerationEvent]:
        yield TextChunk(self.text, 0)
        yield Finished(0, 0, "stop", None)

    def cancel(self) -> None:
        return None


@dataclass
class Choice:
    """One of the ``n`` replies: its stream, its text so far and how it ended."""

    index: int
    stream: EventStream
    parts: list[str] = field(default_factory=list)
    """The text sent so far (restored)."""
    tokens: int = 0
    finished: Finished | None = None
    restorer: Restorer | None = None


class Generation:
    """The ``n`` choices of one request, run together on the engine."""

    def __init__(
        self,
        model: Generator,
        body: GenerationBody,
        prompt: list[int],
        said: str | None = None,
        placeholders: Placeholders | None = None,
    ) -> None:
        """``said``: the reply to give as it is instead of generating (``prompt`` then empty);
        ``placeholders``: those the prompt has instead of personal data."""
        self.model = model
        self.prompt = prompt
        self._placeholders = placeholders
        defaults = model.generation
        self.max_tokens = body.reply_limit or defaults.max_tokens
        self.choices: list[Choice] = []
        if said is not None:
            self.choices.extend(self._choice(index, _Said(said)) for index in range(body.n))
            return
        engine = model.engine()
        grammar = None
        if isinstance(body, ChatCompletionRequest):
            response_format = body.response_format
            if isinstance(response_format, JsonSchemaResponseFormat):
                grammar = grammar_of(response_format.json_schema.schema_)
            elif isinstance(response_format, JsonObjectFormat):
                grammar = json_grammar()
        try:
            for index in range(body.n):
                request = GenerationRequest(
                    prompt,
                    max_tokens=self.max_tokens,
                    temperature=defaults.temperature
                    if body.temperature is None
                    else body.temperature,
                    top_p=defaults.top_p if body.top_p is None else body.top_p,
                    seed=None if body.seed is None else body.seed + index,
                    stop=body.stops or defaults.stop,
                    grammar=grammar,
                )
                self.choices.append(self._choice(index, engine.submit(request)))
        except BaseException:
            self.cancel()
            raise

    def _choice(self, index: int, stream: EventStream) -> Choice:
        restorer = self._placeholders.restorer() if self._placeholders else None
        return Choice(index, stream, restorer=restorer)

    def flush(self, choice: Choice) -> str:
        """What of the choice's text was held back (the start of a placeholder, perhaps), now
        that it ended or was cut short; it joins the choice's text."""
        rest = choice.restorer.flush() if choice.restorer is not None else ""
        if rest:
            choice.parts.append(rest)
        return rest

    def text(self, choice: Choice) -> str:
        """The choice's whole text."""
        self.flush(choice)
        return "".join(choice.parts)

    @property
    def completion_tokens(self) -> int:
        return sum(choice.tokens for choice in self.choices)

    def cancel(self) -> None:
        for choice in self.choices:
            choice.stream.cancel()

    async def events(self) -> AsyncIterator[tuple[Choice, TextChunk | Finished]]:
        """Every choice's events as they come, merged."""
        queue: asyncio.Queue[tuple[Choice, TextChunk | Finished] | BaseException | None]
        queue = asyncio.Queue()

        async def pump(choice: Choice) -> None:
            try:
                async for event in choice.stream:
                    await queue.put((choice, event))
            except BaseException as exc:  # the engine closed or failed: end the request
                await queue.put(exc)
            finally:
                await queue.put(None)

        tasks = [asyncio.create_task(pump(choice)) for choice in self.choices]
        try:
            remaining = len(tasks)
            while remaining:
                item = await queue.get()
                if item is None:
                    remaining -= 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    choice, event = item
                    choice.tokens = event.completion_tokens
                    restorer = choice.restorer
                    if isinstance(event, TextChunk):
                        text = restorer.feed(event.text) if restorer else event.text
                        if not text:
                            continue  # held back: it may be the start of a placeholder
                        choice.parts.append(text)
                        yield choice, TextChunk(text, event.completion_tokens)
                        continue
                    rest = self.flush(choice)
                    if rest:
                        yield choice, TextChunk(rest, event.completion_tokens)
                    choice.finished = event
                    yield item
        finally:
            self.cancel()
            for task in tasks:
                task.cancel()

    def finish_reason(self, choice: Choice) -> FinishReason:
        finished = choice.finished
        return "stop" if finished is not None and finished.finish_reason == "stop" else "length"

    def usage(self) -> Usage:
        completion = self.completion_tokens
        return Usage(
            prompt_tokens=len(self.prompt),
            completion_tokens=completion,
            total_tokens=len(self.prompt) + completion,
        )


def grammar_of(schema: dict[str, object]) -> str:
    """The grammar of a response_format's JSON Schema. The converter (llama.cpp's port) takes a
    subset of JSON Schema and fails in various ways outside it: a 400 naming the parameter."""
    try:
        return json_grammar(schema)
    except Exception as exc:
        raise ApiError(
            400,
            "invalid_request",
            f"response_format.json_schema: this JSON Schema cannot be enforced ({exc!r:.200})",
            param="response_format",
        ) from None
