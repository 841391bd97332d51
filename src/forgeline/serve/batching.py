"""Adaptive request batching: concurrent requests to one model share one forward pass.

Requests wait in a bounded queue; a worker takes the first, gathers more until the batch holds
``max_batch_size`` inputs or ``max_wait_ms`` has passed, runs the model once on a dedicated
thread, and hands each request its own slice of the results, in order. When the queue is full
new requests are refused at once (the server answers 503 with Retry-After) instead of piling up
in memory.

Requests from different callers share a batch, so one caller's input must never fail another's
request: when a batch fails, it is split in halves and each half run again, down to the single
requests that fail on their own, which alone get the error. One bad request among n costs about
2 log2(n) extra passes, so sending bad inputs cannot turn everyone's batches into single runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from forgeline.config.service import BatchingConfig

Predict = Callable[[list[Any]], list[dict[str, Any]]]


class Overloaded(Exception):
    def __init__(self, queued: int, limit: int) -> None:
        super().__init__(f"{queued} inputs are queued, the limit is max_queue={limit}")


@dataclass
class _Job:
    inputs: Sequence[Any]
    future: asyncio.Future[list[dict[str, Any]]]


@dataclass
class Batcher:
    predict: Predict
    settings: BatchingConfig
    on_batch: Callable[[int], None] = lambda size: None
    on_queue: Callable[[int], None] = lambda depth: None
    queued: int = 0
    _queue: asyncio.Queue[_Job] | None = None
    _worker: asyncio.Task[None] | None = None
    # One inference thread per model: the runtime already uses every core for a batch.
    _executor: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(max_workers=1))

    async def submit(self, inputs: Sequence[Any]) -> list[dict[str, Any]]:
        # A request larger than the whole queue is still served when the queue is empty.
        if self.queued and self.queued + len(inputs) > self.settings.max_queue:
            raise Overloaded(self.queued, self.settings.max_queue)
        if self._queue is None:
            self._queue = asyncio.Queue()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._run(self._queue))
        job = _Job(inputs, asyncio.get_running_loop().create_future())
        self.queued += len(inputs)
        self.on_queue(self.queued)
        self._queue.put_nowait(job)
        return await job.future

    async def _gather(self, queue: asyncio.Queue[_Job]) -> list[_Job]:
        loop = asyncio.get_running_loop()
        jobs = [await queue.get()]
        size = len(jobs[0].inputs)
        # What queued up while the last batch ran joins without waiting (with max_wait_ms 0
        # too, so that a busy model still runs full batches).
        while size < self.settings.max_batch_size and not queue.empty():
            jobs.append(queue.get_nowait())
            size += len(jobs[-1].inputs)
        deadline = loop.time() + self.settings.max_wait_ms / 1000
        while size < self.settings.max_batch_size:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                job = await asyncio.wait_for(queue.get(), remaining)
            except TimeoutError:
                break
            jobs.append(job)
            size += len(job.inputs)
        return jobs

    async def _run(self, queue: asyncio.Queue[_Job]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._gather(queue)
            batch = [item for job in jobs for item in job.inputs]
            self.queued -= len(batch)
            self.on_queue(self.queued)
            self.on_batch(len(batch))
            try:
                results = await loop.run_in_executor(self._executor, self.predict, batch)
            except Exception as exc:
                if len(jobs) == 1:
                    _fail(jobs[0], exc)
                else:
                    middle = len(jobs) // 2
                    await self._run_split(jobs[:middle])
                    await self._run_split(jobs[middle:])
                continue
            offset = 0
            for job in jobs:
                if not job.future.done():  # the client may have gone away
                    job.future.set_result(results[offset : offset + len(job.inputs)])
                offset += len(job.inputs)

    async def _run_split(self, jobs: list[_Job]) -> None:
        """Run ``jobs`` as one batch; if it fails, split it until the failures are alone."""
        jobs = [job for job in jobs if not job.future.done()]
        if not jobs:
            return
        batch = [item for job in jobs for item in job.inputs]
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self._executor, self.predict, batch)
        except Exception as exc:
            if len(jobs) == 1:
                _fail(jobs[0], exc)
                return
            middle = len(jobs) // 2
            await self._run_split(jobs[:middle])
            await self._run_split(jobs[middle:])
            return
        offset = 0
        for job in jobs:
            if not job.future.done():
                job.future.set_result(results[offset : offset + len(job.inputs)])
            offset += len(job.inputs)


def _fail(job: _Job, exc: Exception) -> None:
    if not job.future.done():
        job.future.set_exception(exc)


class Lane:
    """Heavy work that is not batched (explanations) on a thread of its own, with at most
    ``max_queue`` calls waiting: it cannot take the threads that key lookups and the ledger's
    reads run on, and a flood of it is refused (503) instead of piling up."""

    def __init__(self, max_queue: int) -> None:
        self.max_queue = max_queue
        self.queued = 0
        self._executor = ThreadPoolExecutor(max_workers=1)

    async def run(self, work: Callable[[Sequence[Any]], Any], inputs: Sequence[Any]) -> Any:
        if self.queued >= self.max_queue:
            raise Overloaded(self.queued, self.max_queue)
        self.queued += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, work, inputs)
        finally:
            self.queued -= 1
