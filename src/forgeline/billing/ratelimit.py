"""Per-API-key rate limits: a token bucket, in process or shared through Redis.

Why a token bucket: a client may send a short burst (up to ``burst`` requests at once, e.g. a
page that fires several calls) but cannot exceed ``rate`` requests per second over time. Unlike
a fixed window it has no boundary at which a client can send two windows' worth at once, and
it needs only two numbers per key (tokens left, time of the last refill), so it is cheap both in
memory and as one small atomic Redis script. When a request is refused the bucket also says
exactly when the next token arrives, which becomes the ``Retry-After`` header.

Why the Redis clock: with several server processes or replicas sharing one bucket, each process
would refill the bucket using its own clock, and clocks on different machines drift apart; a
process whose clock runs ahead would hand out tokens that have not been earned yet, and one that
runs behind would refuse requests that should pass. The Lua script therefore reads the time with
``redis.call('TIME')`` so that every process refills from the same clock.

Rate limits here count requests, not units: a request that classifies one text and one that
classifies a batch of a hundred each take one token. Volume (texts, tokens) is what quotas and
the usage ledger count; the rate limit only protects the server from being flooded.

``LocalRateLimiter`` serves a single server process; ``RedisRateLimiter`` must be used as soon as
there are several processes (``uvicorn --workers``, several replicas), otherwise each process
keeps its own buckets and a key gets ``burst`` and ``rate`` once per process.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from forgeline.credentials import hide_credentials, redact_url

__all__ = [
    "LocalRateLimiter",
    "RateDecision",
    "RateLimiter",
    "RateLimiterUnavailable",
    "RedisRateLimiter",
    "rate_limiter",
]


@dataclass(frozen=True)
class RateDecision:
    """Whether one request may proceed, and if not, when to try again."""

    allowed: bool
    retry_after: float  # seconds until one token is available; 0.0 when allowed


class RateLimiterUnavailable(Exception):
    """The shared limiter (Redis) cannot be reached."""


class RateLimiter(Protocol):
    """Takes one token from a named bucket per request."""

    async def acquire(self, bucket: str, rate: float, burst: int) -> RateDecision:
        """Take one token from ``bucket`` (capacity ``burst``, refilled at ``rate``/s)."""
        ...

    async def close(self) -> None:
        """Release connections; the limiter must not be used afterwards."""
        ...


def _check_limits(rate: float, burst: int) -> None:
    # A zero rate would divide by zero in retry_after, and a burst below one token
    # would refuse every request forever; both are configuration errors, not limits.
    if not (rate > 0 and math.isfinite(rate)):
        raise ValueError(f"rate must be a positive number of requests per second, got {rate!r}")
    if burst < 1:
        raise ValueError(f"burst must be at least 1, got {burst!r}")


@dataclass
class _Bucket:
    tokens: float
    updated: float
    # Kept so that eviction can tell a full bucket without knowing each bucket's rate/burst.
    full_at: float


class LocalRateLimiter:
    """Token buckets in this process's memory; correct only for a single server process."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, max_buckets: int = 100_000
    ) -> None:
        if max_buckets < 1:
            raise ValueError(f"max_buckets must be at least 1, got {max_buckets!r}")
        self._clock = clock
        self._max_buckets = max_buckets
        self._buckets: dict[str, _Bucket] = {}
        # Size at which the next sweep runs; see _evict_full_buckets.
        self._sweep_at = max_buckets

    async def acquire(self, bucket: str, rate: float, burst: int) -> RateDecision:
        _check_limits(rate, burst)
        # No await between reading and writing the bucket, so under asyncio no other
        # request can interleave here and no lock is needed.
        now = self._clock()
        state = self._buckets.get(bucket)
        if state is None:
            if len(self._buckets) >= self._sweep_at:
                self._evict_full_buckets(now)
            tokens = float(burst)
        else:
            # max(0, ...) guards against a clock that steps backwards.
            elapsed = max(0.0, now - state.updated)
            tokens = min(float(burst), state.tokens + elapsed * rate)

        if tokens >= 1.0:
            tokens -= 1.0
            decision = RateDecision(allowed=True, retry_after=0.0)
        else:
            decision = RateDecision(allowed=False, retry_after=(1.0 - tokens) / rate)

        full_at = now + (burst - tokens) / rate
        if state is None:
            self._buckets[bucket] = _Bucket(tokens=tokens, updated=now, full_at=full_at)
        else:
            state.tokens, state.updated, state.full_at = tokens, now, full_at
        return decision

    def _evict_full_buckets(self, now: float) -> None:
        # A full bucket holds no information: a bucket that is missing starts full, so
        # dropping it changes no decision. Dropping a bucket that is still refilling would
        # hand its key a fresh burst, so those stay even if that leaves us above
        # max_buckets; they become full (and evictable) within burst/rate seconds, so the
        # dict stays bounded by the keys active in that window. The next sweep waits until
        # the dict has doubled, so that a dict full of busy buckets does not cost a full
        # scan on every new key (amortised O(1) per request).
        self._buckets = {k: b for k, b in self._buckets.items() if b.full_at > now}
        self._sweep_at = max(self._max_buckets, 2 * len(self._buckets))

    async def close(self) -> None:
        self._buckets.clear()


# KEYS[1]: the bucket hash {tokens, ts}. ARGV[1]: rate (tokens/s), ARGV[2]: burst.
# Returns {allowed (0/1), retry_after in microseconds}: Redis truncates Lua numbers to
# integers in replies, so a fractional number of seconds would be lost.
# Times are integer microseconds (exact in a double), and values are written with %.17g
# because Lua's default number-to-string keeps only 14 digits, which would round them.
# TIME is non-deterministic: Redis < 5 needed redis.replicate_commands() before writing
# after it. Since Redis 5 scripts replicate their effects (the writes) by default, and
# Redis 7 only does that, so no call is needed here.
_ACQUIRE_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
-- The server clock can step back (e.g. after a failover); never refill negatively.
local elapsed = math.max(0, now - ts)
tokens = math.min(burst, tokens + elapsed * rate / 1000000)
local allowed = 0
local retry_us = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  retry_us = math.ceil((1 - tokens) * 1000000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens),
           'ts', string.format('%.17g', now))
-- A bucket expires once it would be full again (plus a margin): a missing bucket starts
-- full, so expiring then loses nothing and idle keys do not accumulate in Redis.
local ttl_ms = math.ceil((burst - tokens) * 1000 / rate) + 1000
redis.call('PEXPIRE', KEYS[1], string.format('%d', ttl_ms))
return {allowed, retry_us}
"""

# Kept short: a request waiting on an unreachable Redis holds its connection open, and the
# caller should rather fail fast (and decide to refuse or let the request through).
_SOCKET_TIMEOUT_SECONDS = 1.0


class RedisRateLimiter:
    """Token buckets in Redis, shared by every process and replica using the same Redis."""

    def __init__(self, url: str, prefix: str = "forgeline:ratelimit:") -> None:
        # Imported here so that the in-process limiter works without the optional
        # ``redis`` extra installed.
        import redis.asyncio

        self._url = redact_url(url)
        self._prefix = prefix
        # from_url does not connect yet; connection errors surface in acquire().
        self._client = redis.asyncio.Redis.from_url(
            url,
            socket_timeout=_SOCKET_TIMEOUT_SECONDS,
            socket_connect_timeout=_SOCKET_TIMEOUT_SECONDS,
        )
        # register_script sends EVALSHA and falls back to EVAL once if Redis lost the
        # script (restart, SCRIPT FLUSH), so the script body is not resent each time.
        self._script = self._client.register_script(_ACQUIRE_LUA)

    async def acquire(self, bucket: str, rate: float, burst: int) -> RateDecision:
        import redis.exceptions

        _check_limits(rate, burst)
        try:
            reply = await self._script(
                keys=[self._prefix + bucket], args=[repr(float(rate)), burst]
            )
        except (redis.exceptions.RedisError, OSError) as exc:  # unreachable, OOM, READONLY...
            # The detail (with the URL, its password masked) is for the server log only.
            raise RateLimiterUnavailable(
                f"cannot reach the rate-limit Redis at {self._url}: {hide_credentials(str(exc))}"
            ) from exc
        allowed, retry_us = int(reply[0]), int(reply[1])
        if allowed:
            return RateDecision(allowed=True, retry_after=0.0)
        return RateDecision(allowed=False, retry_after=retry_us / 1_000_000)

    async def close(self) -> None:
        await self._client.aclose()


def rate_limiter(redis_url: str | None) -> RateLimiter:
    """The Redis limiter when a URL is given (None or "" means none), else the local one."""
    if redis_url:
        return RedisRateLimiter(redis_url)
    return LocalRateLimiter()
