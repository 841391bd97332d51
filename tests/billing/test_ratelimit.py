"""Token-bucket rate limits: the in-process limiter with a fake clock, and the Redis one."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator

import pytest

from forgeline.billing.ratelimit import (
    LocalRateLimiter,
    RateDecision,
    RateLimiterUnavailable,
    RedisRateLimiter,
    rate_limiter,
)

REDIS_URL = "redis://127.0.0.1:6379/0"
UNREACHABLE_URL = "redis://127.0.0.1:1/0"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _acquire_n(
    limiter: LocalRateLimiter, bucket: str, n: int, rate: float, burst: int
) -> list[RateDecision]:
    async def run() -> list[RateDecision]:
        return [await limiter.acquire(bucket, rate, burst) for _ in range(n)]

    return asyncio.run(run())


# --- local -----------------------------------------------------------------------------


def test_local_fresh_bucket_allows_burst_then_refuses_with_retry_after() -> None:
    limiter = LocalRateLimiter(clock=FakeClock())
    decisions = _acquire_n(limiter, "key-a", 6, rate=2.0, burst=5)
    assert [d.allowed for d in decisions] == [True] * 5 + [False]
    assert all(d.retry_after == 0.0 for d in decisions[:5])
    assert decisions[5].retry_after == pytest.approx(0.5)


def test_local_refills_as_time_advances() -> None:
    clock = FakeClock()
    limiter = LocalRateLimiter(clock=clock)
    assert [d.allowed for d in _acquire_n(limiter, "k", 3, rate=1.0, burst=2)] == [
        True,
        True,
        False,
    ]
    clock.now += 0.25
    refused = _acquire_n(limiter, "k", 1, rate=1.0, burst=2)[0]
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(0.75)
    clock.now += 0.75
    assert [d.allowed for d in _acquire_n(limiter, "k", 2, rate=1.0, burst=2)] == [True, False]
    # A long idle period refills only up to burst, not beyond.
    clock.now += 3600
    assert [d.allowed for d in _acquire_n(limiter, "k", 3, rate=1.0, burst=2)] == [
        True,
        True,
        False,
    ]


def test_local_buckets_are_independent() -> None:
    limiter = LocalRateLimiter(clock=FakeClock())
    assert [d.allowed for d in _acquire_n(limiter, "a", 2, rate=1.0, burst=1)] == [True, False]
    assert [d.allowed for d in _acquire_n(limiter, "b", 2, rate=1.0, burst=1)] == [True, False]


def test_local_eviction_bounds_memory_without_resetting_a_busy_bucket() -> None:
    clock = FakeClock()
    limiter = LocalRateLimiter(clock=clock, max_buckets=3)
    # "busy" is emptied; the idle ones each lose one token.
    assert [d.allowed for d in _acquire_n(limiter, "busy", 3, rate=1.0, burst=2)] == [
        True,
        True,
        False,
    ]
    _acquire_n(limiter, "idle-1", 1, rate=1.0, burst=2)
    _acquire_n(limiter, "idle-2", 1, rate=1.0, burst=2)
    # After 1 s the idle buckets are full again; "busy" holds 1 of 2 tokens.
    clock.now += 1.0
    for i in range(3):
        _acquire_n(limiter, f"new-{i}", 1, rate=1.0, burst=2)
    assert "idle-1" not in limiter._buckets
    assert "idle-2" not in limiter._buckets
    assert len(limiter._buckets) <= 4
    # Not reset to a fresh burst: exactly the one refilled token is there.
    assert [d.allowed for d in _acquire_n(limiter, "busy", 2, rate=1.0, burst=2)] == [True, False]

    # Many short-lived keys: the dict stays bounded once their buckets have refilled.
    for i in range(1000):
        clock.now += 10.0
        _acquire_n(limiter, f"burst-{i}", 1, rate=1.0, burst=2)
    assert len(limiter._buckets) <= 3


def test_local_rejects_invalid_limits() -> None:
    limiter = LocalRateLimiter()
    with pytest.raises(ValueError, match="rate"):
        _acquire_n(limiter, "k", 1, rate=0.0, burst=1)
    with pytest.raises(ValueError, match="burst"):
        _acquire_n(limiter, "k", 1, rate=1.0, burst=0)


# --- factory ---------------------------------------------------------------------------


def test_rate_limiter_factory() -> None:
    assert isinstance(rate_limiter(None), LocalRateLimiter)
    redis_limiter = rate_limiter(REDIS_URL)
    assert isinstance(redis_limiter, RedisRateLimiter)
    asyncio.run(redis_limiter.close())  # no connection was made; close is still clean


# --- Redis -----------------------------------------------------------------------------


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A unique key prefix on a reachable Redis; its keys are deleted afterwards."""
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=1.0, socket_connect_timeout=1.0)
    try:
        client.ping()
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError):
        client.close()
        pytest.skip(f"Redis not reachable at {REDIS_URL}")
    prefix = f"forgeline-test:{uuid.uuid4().hex}:"
    try:
        yield prefix
    finally:
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)
        client.close()


def test_redis_two_processes_share_one_bucket(redis_prefix: str) -> None:
    burst, extra = 5, 4

    async def run() -> list[RateDecision]:
        # Two limiters with their own clients, as two server processes would have.
        first = RedisRateLimiter(REDIS_URL, prefix=redis_prefix)
        second = RedisRateLimiter(REDIS_URL, prefix=redis_prefix)
        try:
            decisions = []
            for i in range(burst + extra):
                limiter = first if i % 2 == 0 else second
                decisions.append(await limiter.acquire("key-1", 0.1, burst))
            return decisions
        finally:
            await first.close()
            await second.close()

    decisions = asyncio.run(run())
    assert [d.allowed for d in decisions] == [True] * burst + [False] * extra
    for refused in decisions[burst:]:
        assert 0.0 < refused.retry_after <= 1 / 0.1


def test_redis_concurrent_calls_get_exactly_burst(redis_prefix: str) -> None:
    burst, extra, rate = 7, 13, 0.1

    async def run() -> list[RateDecision]:
        first = RedisRateLimiter(REDIS_URL, prefix=redis_prefix)
        second = RedisRateLimiter(REDIS_URL, prefix=redis_prefix)
        try:
            calls = [
                (first if i % 2 == 0 else second).acquire("key-2", rate, burst)
                for i in range(burst + extra)
            ]
            return list(await asyncio.gather(*calls))
        finally:
            await first.close()
            await second.close()

    decisions = asyncio.run(run())
    assert sum(d.allowed for d in decisions) == burst
    refused = [d for d in decisions if not d.allowed]
    assert len(refused) == extra
    assert all(0.0 < d.retry_after <= 1 / rate for d in refused)


def test_redis_refills_and_buckets_are_independent(redis_prefix: str) -> None:
    async def run() -> tuple[list[bool], list[bool], bool]:
        limiter = RedisRateLimiter(REDIS_URL, prefix=redis_prefix)
        try:
            a = [(await limiter.acquire("a", 20.0, 2)).allowed for _ in range(3)]
            b = [(await limiter.acquire("b", 20.0, 2)).allowed for _ in range(3)]
            await asyncio.sleep(0.1)  # 20/s: two tokens back after 0.1 s
            later = (await limiter.acquire("a", 20.0, 2)).allowed
            return a, b, later
        finally:
            await limiter.close()

    a, b, later = asyncio.run(run())
    assert a == [True, True, False]
    assert b == [True, True, False]
    assert later


def test_redis_sets_an_expiry_on_the_bucket(redis_prefix: str) -> None:
    import redis

    async def run() -> None:
        limiter = RedisRateLimiter(REDIS_URL, prefix=redis_prefix)
        try:
            await limiter.acquire("k", 2.0, 4)
        finally:
            await limiter.close()

    asyncio.run(run())
    client = redis.Redis.from_url(REDIS_URL)
    try:
        ttl_ms = client.pttl(redis_prefix + "k")
    finally:
        client.close()
    # One token to refill at 2/s is 0.5 s, plus the margin.
    assert isinstance(ttl_ms, int)
    assert 0 < ttl_ms <= 1500


def test_redis_unreachable_raises_unavailable() -> None:
    async def run() -> None:
        limiter = RedisRateLimiter(UNREACHABLE_URL)
        try:
            await limiter.acquire("k", 1.0, 1)
        finally:
            await limiter.close()

    with pytest.raises(RateLimiterUnavailable, match=re.escape("redis://127.0.0.1:1/0")):
        asyncio.run(run())


def test_redis_error_message_hides_the_password() -> None:
    async def run() -> None:
        limiter = RedisRateLimiter("redis://user:s3cret@127.0.0.1:1/0")
        try:
            await limiter.acquire("k", 1.0, 1)
        finally:
            await limiter.close()

    with pytest.raises(RateLimiterUnavailable) as info:
        asyncio.run(run())
    assert "s3cret" not in str(info.value)
    assert "user:***@127.0.0.1:1" in str(info.value)
