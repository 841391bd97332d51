"""Checking a bearer token: the admin key from the environment, or a stored API key, with a
short-lived cache in front of the key store."""

from __future__ import annotations

import asyncio
import hmac
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from forgeline.billing.keys import (
    TOKEN,
    AuthError,
    KeyStore,
    Principal,
    UnknownKey,
    digest,
    utcnow,
)
from forgeline.errors import ConfigError

ADMIN_KEY_ENV = "FORGELINE_ADMIN_KEY"
MIN_ADMIN_KEY_CHARS = 32


_ENV_ADMIN = Principal(
    key_id="env-admin",
    tenant_id=None,
    tenant=None,
    plan=None,
    models=frozenset(),
    actions=frozenset(),
    is_admin=True,
    expires_at=None,
)


def presented_key_id(authorization: str | None) -> str | None:
    """The id of the Forgeline key in an Authorization header, whether or not it exists: the
    public part of the key, which may be logged; never the secret."""
    _, _, token = (authorization or "").partition(" ")
    match = TOKEN.fullmatch(token.strip())
    return match.group(1) if match is not None else None


class _Recent:
    """A bounded map of recent lookups, least recently used first out. Evicting one entry at a
    time (rather than clearing all when full) keeps a flood of made-up key ids from flushing
    the entries of real keys."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[str, tuple[float, str, Principal | None]] = OrderedDict()
        # Lookups run in worker threads (off the event loop): an eviction there must not race
        # a move_to_end here.
        self._lock = threading.Lock()

    def get(self, key_id: str) -> tuple[float, str, Principal | None] | None:
        with self._lock:
            entry = self._entries.get(key_id)
            if entry is not None:
                self._entries.move_to_end(key_id)
            return entry

    def put(self, key_id: str, entry: tuple[float, str, Principal | None]) -> None:
        with self._lock:
            self._entries[key_id] = entry
            self._entries.move_to_end(key_id)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def pop(self, key_id: str) -> None:
        with self._lock:
            self._entries.pop(key_id, None)


class Authenticator:
    """Checks bearer tokens against the key store, caching each key for ``ttl`` seconds.

    The cache keeps the database off the hot path; its short life is what bounds how long a
    key revoked elsewhere (by the CLI, or by another server process) keeps working. Ids that
    match no key are cached apart from real keys, so guessing ids cannot evict real ones.
    """

    def __init__(
        self,
        keys: KeyStore,
        ttl: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        admin_key: str | None = None,
        cache_size: int = 100_000,
    ) -> None:
        self.keys = keys
        self.ttl = ttl
        self.clock = clock
        admin = admin_key if admin_key is not None else os.environ.get(ADMIN_KEY_ENV)
        if admin and len(admin) < MIN_ADMIN_KEY_CHARS:
            raise ConfigError(
                f"{ADMIN_KEY_ENV} is {len(admin)} characters; an admin key needs at least "
                f"{MIN_ADMIN_KEY_CHARS}. Make one with: python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))' (or use `forgeline keys create --admin`)"
            )
        self._admin_digest = digest(admin) if admin else None
        self._known = _Recent(cache_size)
        self._unknown = _Recent(max(1, cache_size // 10))

    async def authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise AuthError(401, "missing_key", "send an API key: 'Authorization: Bearer <key>'")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthError(
                401, "invalid_authorization", "the Authorization header must be 'Bearer <key>'"
            )
        presented = digest(token)
        if self._admin_digest is not None and hmac.compare_digest(presented, self._admin_digest):
            return _ENV_ADMIN
        match = TOKEN.fullmatch(token)
        if match is None:
            raise AuthError(401, "invalid_key", "this is not a Forgeline API key")
        key_id = match.group(1)
        found = self._cached(key_id)
        if found is None:
            # Off the event loop: on PostgreSQL this is a network round trip per key and TTL.
            found = await asyncio.to_thread(self._fetch, key_id)
        stored, principal = found
        if not hmac.compare_digest(presented, stored):
            raise AuthError(401, "invalid_key", "the API key is not valid")
        if principal is None:
            raise AuthError(401, "revoked_key", f"key {key_id} has been revoked")
        if principal.expires_at is not None and principal.expires_at <= utcnow():
            raise AuthError(401, "expired_key", f"key {key_id} expired at {principal.expires_at}Z")
        return principal

    def knows(self, authorization: str | None) -> bool:
        """Whether ``authorization`` names a key id this server has seen exist (however long
        ago): a throttled address may still look such keys up, but not made-up ones."""
        key_id = presented_key_id(authorization)
        return key_id is not None and self._known.get(key_id) is not None

    def _cached(self, key_id: str) -> tuple[str, Principal | None] | None:
        cached = self._known.get(key_id) or self._unknown.get(key_id)
        if cached is not None and self.clock() - cached[0] < self.ttl:
            return cached[1], cached[2]
        return None

    def _fetch(self, key_id: str) -> tuple[str, Principal | None]:
        now = self.clock()
        try:
            stored, principal = self.keys.principal(key_id)
        except UnknownKey:
            self._unknown.put(key_id, (now, "", None))
            return "", None
        self._unknown.pop(key_id)
        self._known.put(key_id, (now, stored, principal))
        return stored, principal

    def forget(self, key_id: str) -> None:
        """Drop a cached key at once, e.g. after this process revoked it."""
        self._known.pop(key_id)
        self._unknown.pop(key_id)
