"""OpenAI-compatible generation: ``POST /v1/chat/completions`` and ``POST /v1/completions``.

Every client library that speaks OpenAI's API works against these routes unchanged: plain and
streamed replies (server-sent events in OpenAI's chunk format, ending ``data: [DONE]``),
``n`` choices, ``stop``, ``seed``, ``stream_options.include_usage`` and ``response_format``
(JSON, or JSON following a schema, enforced by a grammar while decoding).

A streamed reply is produced by a task of its own, which hands chunks to the response: if the
client goes away, the response stops reading and the generation is cancelled (the engine drops
it at its next step), but the task still settles the call's metering with the tokens produced.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from forgeline.errors import InputError
from forgeline.serve.errors import OPENAI_TAG, ApiError
from forgeline.serve.gateway import Gateway
from forgeline.serve.generation import Generation, GenerationBody
from forgeline.serve.metering import (
    AnsweredMeanwhile,
    Call,
    Meter,
    MeteringLost,
    OpenCall,
    json_response,
    replay_response,
)
from forgeline.serve.metrics import ServerMetrics
from forgeline.serve.openai_schemas import (
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    ChatCompletionRequest,
    Completion,
    CompletionChoice,
    CompletionRequest,
)
from forgeline.serve.predict import ServedModels
from forgeline.serve.routing import api_route
from forgeline.tasks.base import ChatMessage, Generator, PreparedChat
from forgeline.tasks.generation import (
    ContextLengthExceeded,
    EngineClosed,
    EngineOverloaded,
    TextChunk,
)

log = logging.getLogger("forgeline.serve")
_RESPONSES: dict[int | str, dict[str, str]] = {
    400: {"description": "Invalid or unsupported parameter, or the prompt does not fit"},
    401: {"description": "No API key, or an invalid one"},
    402: {"description": "A hard-capped plan's quota is used up"},
    403: {"description": "The key may not generate with this model"},
    404: {"description": "No such chat model"},
    409: {
        "description": "A request with this Idempotency-Key is still running, or its stored "
        "answer cannot be decrypted"
    },
    413: {"description": "Request body over max_body_bytes"},
    422: {"description": "The Idempotency-Key was used for another request"},
    429: {"description": "Over the plan's rate limit (Retry-After)"},
    503: {"description": "Not ready, overloaded, or metering unavailable (Retry-After)"},
}


def openai_router(served: ServedModels, gateway: Gateway | None) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=[OPENAI_TAG], route_class=api_route(gateway))
    metrics = served.metrics

    def call_for(request: Request, model: str) -> Call:
        return OpenCall() if gateway is None else gateway.admit(request, model, "generate")

    @router.post(
        "/chat/completions",
        response_model=ChatCompletion,
        responses={**_RESPONSES, 200: {"content": {"text/event-stream": {}}}},
        summary="Reply to a conversation (OpenAI's chat completions)",
    )
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
        return await _serve(request, body)

    @router.post(
        "/completions",
        response_model=Completion,
        responses={**_RESPONSES, 200: {"content": {"text/event-stream": {}}}},
        summary="Continue a prompt (OpenAI's legacy completions)",
    )
    async def completions(body: CompletionRequest, request: Request) -> Response:
        return await _serve(request, body)

    async def _serve(request: Request, body: GenerationBody) -> Response:
        started = time.perf_counter()
        endpoint = "chat" if isinstance(body, ChatCompletionRequest) else "completions"
        model = served.generator(body.model)
        call = call_for(request, body.model)
        replayed = await call.replay(body)
        if replayed is not None:
            return _replayed_as_stream(replayed) if body.stream else replayed
        # A model that redacts its inputs sees placeholders; the reply gets the values back.
        texts, placeholders = await served.privacy.hide(body.model, _texts(body))
        prepared = await _prepared(model, body, texts)
        prompt = [] if prepared.reply is not None else _prompt(model, body, prepared, texts)
        meter = call.meter(body, units=prepared.units)
        try:
            generation = Generation(model, body, prompt, prepared.reply, placeholders)
        except ContextLengthExceeded as exc:
            raise ApiError(400, "context_length_exceeded", str(exc), param="messages") from None
        except InputError as exc:
            raise ApiError(400, "invalid_request", str(exc)) from None
        except EngineOverloaded as exc:
            raise ApiError(503, "overloaded", str(exc), {"Retry-After": "1"}) from None
        except EngineClosed as exc:
            raise ApiError(503, "engine_unavailable", str(exc), {"Retry-After": "1"}) from None
        try:
            # A reply given as it is generates nothing: a hard cap need not hold max_tokens.
            most = 0 if prepared.reply is not None else generation.max_tokens * body.n
            await meter.start(len(prompt), most, streaming=body.stream)
        except BaseException:
            generation.cancel()
            raise
        reply = _Reply(request, body, generation, meter, metrics, started, endpoint)
        reply.citations = prepared.citations or None  # a knowledge base's answer cites entries
        if body.stream:
            return StreamingResponse(reply.stream(), media_type="text/event-stream")
        return await reply.whole()

    return router


def _texts(body: GenerationBody) -> list[str]:
    """What the client wrote: each message's content, or the prompt."""
    if isinstance(body, ChatCompletionRequest):
        return [message.as_chat()["content"] for message in body.messages]
    return [body.prompt]


async def _prepared(model: Generator, body: GenerationBody, texts: list[str]) -> PreparedChat:
    """The conversation, its contents ``texts``, as the model prepares it (off the event loop:
    a knowledge base embeds the question to search); a raw prompt as it is, where the model
    continues raw prompts."""
    if not isinstance(body, ChatCompletionRequest):
        if not model.completes_prompts:
            raise ApiError(
                400,
                "invalid_request",
                f"the model '{body.model}' answers conversations only: use /v1/chat/completions",
                param="model",
            )
        return PreparedChat([])
    try:
        messages = [
            ChatMessage(role=message.as_chat()["role"], content=text)
            for message, text in zip(body.messages, texts, strict=True)
        ]
        return await asyncio.to_thread(model.prepare, messages)
    except InputError as exc:
        raise ApiError(400, "invalid_request", str(exc), param="messages") from None


def _prompt(
    model: Generator, body: GenerationBody, prepared: PreparedChat, texts: list[str]
) -> list[int]:
    engine = model.engine()
    try:
        if isinstance(body, ChatCompletionRequest):
            return engine.chat_prompt(prepared.messages)
        return engine.tokenize(texts[0])
    except EngineClosed as exc:
        raise ApiError(503, "engine_unavailable", str(exc), {"Retry-After": "1"}) from None


class _Reply:
    """One request's answer, whole or streamed, and its metering."""

    def __init__(
        self,
        request: Request,
        body: GenerationBody,
        generation: Generation,
        meter: Meter,
        metrics: ServerMetrics,
        started: float,
        endpoint: str,
    ) -> None:
        self.request, self.body, self.generation, self.meter = request, body, generation, meter
        self.metrics, self.started, self.endpoint = metrics, started, endpoint
        self.id = ("chatcmpl-" if endpoint == "chat" else "cmpl-") + request.state.request_id
        self.created = int(time.time())
        self.timeout = generation.model.engine_settings.request_timeout_seconds
        self.client_gone = False
        self.citations: dict[str, str] | None = None
        """What the reply may cite, on the whole answer and on a stream's first chunk."""

    def result(self) -> BaseModel:
        generation, body = self.generation, self.body
        if isinstance(body, ChatCompletionRequest):
            return ChatCompletion(
                id=self.id,
                created=self.created,
                model=body.model,
                choices=[
                    ChatChoice(
                        index=c.index,
                        message=AssistantMessage(content=generation.text(c)),
                        finish_reason=generation.finish_reason(c),
                    )
                    for c in generation.choices
                ],
                usage=generation.usage(),
                citations=self.citations,
            )
        return Completion(
            id=self.id,
            created=self.created,
            model=body.model,
            choices=[
                CompletionChoice(
                    index=c.index,
                    text=generation.text(c),
                    finish_reason=generation.finish_reason(c),
                )
                for c in generation.choices
            ],
            usage=generation.usage(),
        )

    async def whole(self) -> Response:
        first: float | None = None
        try:
            async with asyncio.timeout(self.timeout):
                async for _, event in self.generation.events():
                    if first is None and isinstance(event, TextChunk):
                        first = time.perf_counter()
        except TimeoutError:
            pass  # cut short: the choices still running end with finish_reason "length"
        except EngineClosed as exc:
            await self._finish(None, delivered=False)
            raise ApiError(503, "engine_unavailable", str(exc), {"Retry-After": "1"}) from None
        body = self.result().model_dump_json().encode()
        try:
            headers = await self._finish(body, delivered=False)
        except AnsweredMeanwhile as twin:
            return replay_response(twin.response)
        self._observe(first)
        return json_response(body, headers=headers)

    def stream(self) -> AsyncIterator[bytes]:
        """The SSE body: chunks handed over by a producer task that outlives a disconnect."""
        chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
        producer = asyncio.create_task(self._produce(chunks))

        async def consume() -> AsyncIterator[bytes]:
            try:
                while (chunk := await chunks.get()) is not None:
                    yield chunk
            finally:
                if not producer.done():
                    self.client_gone = True
                    self.generation.cancel()  # the client went away: stop within a step

        return consume()

    async def _produce(self, chunks: asyncio.Queue[bytes | None]) -> None:
        first: float | None = None
        complete = False
        try:
            for choice in self.generation.choices:
                opening = {"role": "assistant", "content": ""}
                await chunks.put(self._chunk(choice.index, opening, first=choice.index == 0))
            async with asyncio.timeout(self.timeout):
                async for choice, event in self.generation.events():
                    if isinstance(event, TextChunk):
                        await self.meter.hold(self.generation.completion_tokens)
                        first = first or time.perf_counter()
                        await chunks.put(self._chunk(choice.index, {"content": event.text}))
                    elif event.finish_reason != "cancelled":
                        reason = self.generation.finish_reason(choice)
                        await chunks.put(self._chunk(choice.index, {}, reason))
            complete = True
        except TimeoutError:
            complete = True  # cut short at the time limit: the rest ends with "length"
            for choice in self.generation.choices:  # with what each held back, if anything
                if choice.finished is None and (rest := self.generation.flush(choice)):
                    await chunks.put(self._chunk(choice.index, {"content": rest}))
        except (EngineClosed, MeteringLost, ApiError) as exc:
            log.warning("stream %s ended early: %s", self.request.state.request_id, exc)
        finally:
            self.generation.cancel()
            complete = complete and not self.client_gone
            try:
                body = self.result().model_dump_json().encode() if complete else None
                await self._finish(body, delivered=True)
            except ApiError:  # logged; the ledger retries, billing what was sent
                complete = False
            if complete:
                for choice in self.generation.choices:
                    if choice.finished is None:  # cut short by the time limit
                        await chunks.put(self._chunk(choice.index, {}, "length"))
                if self.body.include_usage:
                    await chunks.put(self._usage_chunk())
                await chunks.put(b"data: [DONE]\n\n")
            await chunks.put(None)
            self._observe(first)

    async def _finish(self, body: bytes | None, *, delivered: bool) -> dict[str, str]:
        usage = self.generation.usage()
        return await self.meter.finish(
            usage.prompt_tokens, usage.completion_tokens, body, delivered=delivered
        )

    def _chunk(
        self, index: int, delta: dict[str, str], reason: str | None = None, *, first: bool = False
    ) -> bytes:
        if isinstance(self.body, ChatCompletionRequest):
            choice: dict[str, object] = {"index": index, "delta": delta}
            kind = "chat.completion.chunk"
        else:
            choice = {"index": index, "text": delta.get("content", "")}
            kind = "text_completion"
        choice.update(logprobs=None, finish_reason=reason)
        chunk = {
            "id": self.id,
            "object": kind,
            "created": self.created,
            "model": self.body.model,
            "system_fingerprint": None,
            "choices": [choice],
        }
        if self.body.include_usage:
            chunk["usage"] = None
        if first and self.citations is not None:
            chunk["citations"] = self.citations
        return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode()

    def _usage_chunk(self) -> bytes:
        kind = "chat.completion.chunk" if self.endpoint == "chat" else "text_completion"
        chunk = {
            "id": self.id,
            "object": kind,
            "created": self.created,
            "model": self.body.model,
            "system_fingerprint": None,
            "choices": [],
            "usage": self.generation.usage().model_dump(),
        }
        return f"data: {json.dumps(chunk)}\n\n".encode()

    def _observe(self, first: float | None) -> None:
        name = self.body.model
        self.metrics.requests.labels(name, self.endpoint, "200").inc()
        self.metrics.latency.labels(name, self.endpoint).observe(time.perf_counter() - self.started)
        self.metrics.generated_tokens.labels(name).inc(self.generation.completion_tokens)
        if first is not None:
            self.metrics.time_to_first_token.labels(name).observe(first - self.started)


def _replayed_as_stream(replayed: Response) -> Response:
    """A stored answer, sent to a streaming retry as the stream it would have been."""
    stored = json.loads(bytes(replayed.body))
    chat = stored.get("object") == "chat.completion"
    events: list[str] = []
    for choice in stored["choices"]:
        if chat:
            delta = {"role": "assistant", "content": choice["message"]["content"]}
            part: dict[str, object] = {"index": choice["index"], "delta": delta}
        else:
            part = {"index": choice["index"], "text": choice["text"]}
        part.update(logprobs=None, finish_reason=choice["finish_reason"])
        chunk = {key: stored[key] for key in ("id", "created", "model")}
        chunk.update(object="chat.completion.chunk" if chat else "text_completion", choices=[part])
        if not events and stored.get("citations") is not None:
            chunk["citations"] = stored["citations"]
        events.append(f"data: {json.dumps(chunk)}\n\n")
    events.append("data: [DONE]\n\n")
    headers = {k: v for k, v in replayed.headers.items() if k.lower() != "content-length"}
    headers.pop("content-type", None)
    return StreamingResponse(iter(events), media_type="text/event-stream", headers=headers)
