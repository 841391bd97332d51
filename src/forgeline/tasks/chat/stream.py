"""The hand-over between the engine thread and asyncio callers: jobs, streams, delivery."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from forgeline.tasks.chat._native import SamplerChain
from forgeline.tasks.generation import Finished, GenerationEvent

Delivery = tuple["Job", GenerationEvent | BaseException]
"""An event (or the error that ends the stream) for one job's consumer."""


@dataclass(eq=False)
class Job:
    """A request from submission to its end; its stream and the engine thread share it.

    It holds the stream's event queue rather than the stream, so that a stream whose consumer
    went away can be garbage-collected (and cancel itself) while the engine still runs it.
    """

    prompt: list[int]
    max_tokens: int
    stops: tuple[str, ...]
    sampler: SamplerChain
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue[GenerationEvent | BaseException]
    submitted_at: float
    # Set from the caller's thread and read by the engine thread once per step: a bool
    # assignment is atomic under the GIL, and seeing it one step late is fine.
    cancelled: bool = False


class GenerationStream:
    """The events of one request: :class:`TextChunk` s, then one :class:`Finished`.

    Use it as ``async with engine.submit(request) as stream: async for event in stream``:
    leaving the block early, or the task being cancelled, cancels the request, and the engine
    drops the sequence within one decode step. An error that ends the request early (the
    engine was closed) is raised from the iteration.
    """

    def __init__(self, job: Job) -> None:
        self.prompt_tokens = len(job.prompt)
        self._job = job
        self._done = False

    def cancel(self) -> None:
        """Ask the engine to drop this request; safe from any thread and more than once."""
        if not self._done:
            self._job.cancelled = True

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> GenerationEvent:
        if self._done:
            raise StopAsyncIteration
        event = await self._job.events.get()
        if isinstance(event, BaseException):
            self._done = True
            raise event
        if isinstance(event, Finished):
            self._done = True
        return event

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.cancel()

    def __del__(self) -> None:
        # A consumer that stops iterating without ``async with`` still frees its slot once
        # the stream is garbage-collected.
        self.cancel()


def deliver(deliveries: Sequence[Delivery]) -> None:
    """Hand events to their streams from the engine thread: one wake-up per event loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Delivery]] = {}
    for job, event in deliveries:
        by_loop.setdefault(job.loop, []).append((job, event))
    for loop, items in by_loop.items():
        try:
            loop.call_soon_threadsafe(_put_all, items)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            for job, _ in items:
                job.cancelled = True


def _put_all(items: Sequence[Delivery]) -> None:
    for job, event in items:
        job.events.put_nowait(event)
