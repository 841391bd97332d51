"""The adaptive batcher, with a plain function standing in for the model."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from forgeline.config.service import BatchingConfig
from forgeline.serve.batching import Batcher, Overloaded


def echo(inputs: list[Any]) -> list[dict[str, Any]]:
    time.sleep(0.01)  # a forward pass takes time, so concurrent requests pile up
    return [{"echo": item} for item in inputs]


def test_concurrent_requests_share_batches_without_cross_talk() -> None:
    sizes: list[int] = []
    batcher = Batcher(
        echo, BatchingConfig(max_batch_size=16, max_wait_ms=20), on_batch=sizes.append
    )

    async def main() -> list[list[dict[str, Any]]]:
        return await asyncio.gather(*(batcher.submit([i, i + 1000]) for i in range(40)))

    results = asyncio.run(main())
    assert results == [[{"echo": i}, {"echo": i + 1000}] for i in range(40)]
    assert sum(sizes) == 80
    assert max(sizes) > 2, "requests were not batched together"
    assert max(sizes) <= 16
    assert batcher.queued == 0


def test_a_lone_request_waits_at_most_max_wait_ms() -> None:
    batcher = Batcher(echo, BatchingConfig(max_batch_size=64, max_wait_ms=100))

    async def timed(inputs: list[int]) -> float:
        started = time.perf_counter()
        await batcher.submit(inputs)
        return time.perf_counter() - started

    lone = asyncio.run(timed([1]))
    assert 0.1 <= lone < 1.0
    full = Batcher(echo, BatchingConfig(max_batch_size=2, max_wait_ms=5000))
    started = time.perf_counter()
    asyncio.run(full.submit([1, 2]))  # a full batch does not wait for company
    assert time.perf_counter() - started < 1.0


def test_without_a_wait_what_queued_during_a_batch_runs_as_the_next_one() -> None:
    sizes: list[int] = []
    batcher = Batcher(echo, BatchingConfig(max_batch_size=64, max_wait_ms=0), on_batch=sizes.append)

    async def main() -> None:
        await asyncio.gather(*(batcher.submit([i]) for i in range(9)))

    asyncio.run(main())
    # All nine are queued before the worker first runs: one batch, no waiting for company.
    assert sizes == [9]


def test_a_full_queue_refuses_instead_of_growing() -> None:
    release = threading.Event()

    def blocked(inputs: list[Any]) -> list[dict[str, Any]]:
        release.wait(5)
        return [{"echo": item} for item in inputs]

    batcher = Batcher(blocked, BatchingConfig(max_batch_size=1, max_wait_ms=0, max_queue=3))

    async def main() -> tuple[list[Any], str]:
        first = asyncio.create_task(batcher.submit([0]))
        await asyncio.sleep(0.05)  # the worker takes it and blocks in the model
        waiting = [asyncio.create_task(batcher.submit([i])) for i in (1, 2, 3)]
        await asyncio.sleep(0.05)
        with pytest.raises(Overloaded) as refused:
            await batcher.submit([4])
        release.set()
        return await asyncio.gather(first, *waiting), str(refused.value)

    served, message = asyncio.run(main())
    assert served == [[{"echo": i}] for i in range(4)]
    assert message == "3 inputs are queued, the limit is max_queue=3"


def test_a_failing_model_fails_every_request_in_the_batch() -> None:
    def broken(inputs: list[Any]) -> list[dict[str, Any]]:
        raise RuntimeError("model crashed")

    batcher = Batcher(broken, BatchingConfig(max_batch_size=8, max_wait_ms=20))

    async def main() -> list[Any]:
        outcomes: list[Any] = await asyncio.gather(
            *(batcher.submit([i]) for i in range(3)), return_exceptions=True
        )
        return outcomes

    outcomes = asyncio.run(main())
    assert all(isinstance(o, RuntimeError) for o in outcomes)


def test_one_bad_input_fails_only_its_own_request() -> None:
    """A failing batch is run again request by request: only the request whose input fails
    gets the error, not the other callers who happened to share its batch."""

    def fussy(inputs: list[Any]) -> list[dict[str, Any]]:
        time.sleep(0.01)
        if "bad" in inputs:
            raise ValueError("the tokenizer cannot take this")
        return [{"echo": item} for item in inputs]

    sizes: list[int] = []
    batcher = Batcher(
        fussy, BatchingConfig(max_batch_size=64, max_wait_ms=50), on_batch=sizes.append
    )

    async def main() -> list[object]:
        calls = [batcher.submit([i]) for i in range(5)] + [batcher.submit(["bad"])]
        return list(await asyncio.gather(*calls, return_exceptions=True))

    results = asyncio.run(main())
    assert results[:5] == [[{"echo": i}] for i in range(5)]
    assert isinstance(results[5], ValueError)
    assert max(sizes) > 1  # they did share a batch
    assert batcher.queued == 0


def test_a_bad_request_costs_a_few_extra_passes_not_one_per_request() -> None:
    passes: list[int] = []

    def fussy(inputs: list[Any]) -> list[dict[str, Any]]:
        passes.append(len(inputs))
        if "bad" in inputs:
            raise ValueError("bad input")
        return [{"echo": item} for item in inputs]

    batcher = Batcher(fussy, BatchingConfig(max_batch_size=64, max_wait_ms=200))

    async def main() -> list[object]:
        calls = [batcher.submit([i]) for i in range(31)] + [batcher.submit(["bad"])]
        return list(await asyncio.gather(*calls, return_exceptions=True))

    results = asyncio.run(main())
    assert results[:31] == [[{"echo": i}] for i in range(31)]
    assert isinstance(results[31], ValueError)
    assert len(passes) <= 1 + 2 * 5  # the batch, then two halves per level of 32
