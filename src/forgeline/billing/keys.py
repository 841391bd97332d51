"""API keys: create, list, revoke, rotate, and authenticate a bearer token.

A key reads ``fl_<id>_<secret>``. The id is public (it appears in listings, usage and logs) and
finds the row; the secret is 256 random bits. Only the SHA-256 of the whole key is stored: a
fast hash is enough because the secret is random, not a password that could be guessed, and
the comparison is constant-time. The key itself is shown once, when it is made.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from forgeline.config.sections import NAME_PATTERN
from forgeline.config.service import PlanConfig
from forgeline.db import Database
from forgeline.db.tables import ApiKey, Tenant
from forgeline.errors import ForgelineError

ACTIONS = ("predict", "explain", "generate")
ALL_MODELS = "*"
ADMIN_KEY_ENV = "FORGELINE_ADMIN_KEY"
_TOKEN = re.compile(r"^fl_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
_NAME = re.compile(NAME_PATTERN)


def utcnow() -> datetime:
    """Naive UTC, as every time in the database is."""
    return datetime.now(UTC).replace(tzinfo=None)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ApiKeyError(ForgelineError):
    """A key cannot be made, found or changed as asked."""


class UnknownKey(ApiKeyError):
    """No key has the id given."""


class AuthError(Exception):
    """A request's credentials are refused: 401 (who are you?) or 403 (not allowed)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class KeyInfo:
    """What a listing shows of a key; never the key or its hash."""

    id: str
    tenant: str | None
    plan: str | None
    models: list[str]
    actions: list[str]
    is_admin: bool
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    replaces: str | None

    def status(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


@dataclass(frozen=True)
class Principal:
    """Who is calling, once the key checks out."""

    key_id: str
    tenant_id: int | None
    tenant: str | None
    plan: str | None
    models: frozenset[str]
    actions: frozenset[str]
    is_admin: bool
    expires_at: datetime | None

    def require_tenant(self) -> None:
        if self.tenant_id is None:
            raise AuthError(
                403,
                "admin_key",
                "an admin key manages keys and billing; call /v1 with a tenant key",
            )

    def check_allowed(self, model: str, action: str) -> None:
        self.require_tenant()
        if action not in self.actions:
            raise AuthError(
                403,
                "action_not_allowed",
                f"key {self.key_id} may not {action} (allowed: {', '.join(sorted(self.actions))})",
            )
        if ALL_MODELS not in self.models and model not in self.models:
            raise AuthError(
                403,
                "model_not_allowed",
                f"key {self.key_id} may not use model '{model}' "
                f"(allowed: {', '.join(sorted(self.models))})",
            )

    def may_use(self, model: str) -> bool:
        return ALL_MODELS in self.models or model in self.models


class KeyStore:
    """Keys and tenants in the database; plans come from forgeline.yaml."""

    def __init__(self, db: Database, plans: Mapping[str, PlanConfig]) -> None:
        self.db = db
        self.plans = plans

    def create(
        self,
        *,
        tenant: str | None,
        plan: str | None = None,
        models: list[str] | None = None,
        actions: list[str] | None = None,
        admin: bool = False,
        expires_at: datetime | None = None,
        replaces: str | None = None,
    ) -> tuple[str, KeyInfo]:
        """A new key and what a listing shows of it. The key is not stored and cannot be
        shown again."""
        if admin == (tenant is not None):
            raise ApiKeyError("give --tenant for a customer key, or --admin for an admin key")
        scope_models = sorted(set(models)) if models else [ALL_MODELS]
        for name in scope_models:
            if name != ALL_MODELS and not _NAME.match(name):
                raise ApiKeyError(f"--models: '{name}' is not a model name")
        scope_actions = sorted(set(actions)) if actions else list(ACTIONS)
        unknown = [a for a in scope_actions if a not in ACTIONS]
        if unknown:
            raise ApiKeyError(f"--actions: unknown {', '.join(unknown)}; use {', '.join(ACTIONS)}")
        key_id = secrets.token_hex(6)
        token = f"fl_{key_id}_{secrets.token_urlsafe(32)}"
        with self.db.write() as session:
            tenant_row = self._tenant(session, tenant, plan) if tenant is not None else None
            row = ApiKey(
                id=key_id,
                tenant_id=tenant_row.id if tenant_row else None,
                secret_hash=_digest(token),
                models=scope_models,
                actions=[] if admin else scope_actions,
                is_admin=admin,
                created_at=utcnow(),
                expires_at=expires_at,
                revoked_at=None,
                replaces=replaces,
            )
            session.add(row)
            session.flush()
            return token, _info(row, tenant_row)

    def _tenant(self, session: Session, name: str, plan: str | None) -> Tenant:
        if not _NAME.match(name):
            raise ApiKeyError(f"--tenant: '{name}' must be lowercase letters, digits, . _ -")
        row = session.scalar(select(Tenant).where(Tenant.name == name))
        if row is not None:
            if plan is not None and plan != row.plan:
                raise ApiKeyError(
                    f"tenant '{name}' is on plan '{row.plan}'; a tenant has one plan "
                    f"(leave out --plan, or use another tenant name)"
                )
            return row
        if plan is None:
            raise ApiKeyError(f"tenant '{name}' is new: give its plan with --plan")
        if plan not in self.plans:
            known = ", ".join(sorted(self.plans)) or "none: add billing.plans to forgeline.yaml"
            raise ApiKeyError(f"--plan: no plan '{plan}' (plans: {known})")
        row = Tenant(name=name, plan=plan, created_at=utcnow())
        session.add(row)
        session.flush()
        return row

    def list(self, tenant: str | None = None) -> list[KeyInfo]:
        with self.db.read() as session:
            query = select(ApiKey, Tenant).outerjoin(Tenant, ApiKey.tenant_id == Tenant.id)
            if tenant is not None:
                query = query.where(Tenant.name == tenant)
            rows = session.execute(query.order_by(ApiKey.created_at)).all()
            return [_info(key, owner) for key, owner in rows]

    def exist(self) -> bool:
        """Whether any key was ever made (cheaper than listing them)."""
        with self.db.read() as session:
            return session.scalar(select(ApiKey.id).limit(1)) is not None

    def revoke(self, key_id: str) -> KeyInfo:
        with self.db.write() as session:
            key, owner = self._get(session, key_id)
            if key.revoked_at is None:
                key.revoked_at = utcnow()
            return _info(key, owner)

    def rotate(self, key_id: str, overlap: timedelta) -> tuple[str, KeyInfo]:
        """A new key with the same tenant and scopes; the old one keeps working for
        ``overlap`` so clients can switch without downtime, then expires."""
        with self.db.read() as session:
            old, owner = self._get(session, key_id)
        if old.revoked_at is not None:
            raise ApiKeyError(f"key {key_id} is revoked; create a new key instead")
        token, info = self.create(
            tenant=owner.name if owner else None,
            models=old.models,
            actions=old.actions or None,
            admin=old.is_admin,
            expires_at=old.expires_at,
            replaces=old.id,
        )
        with self.db.write() as session:
            row = session.get(ApiKey, key_id)
            assert row is not None
            ends = utcnow() + overlap
            row.expires_at = ends if row.expires_at is None else min(row.expires_at, ends)
        return token, info

    @staticmethod
    def _get(session: Session, key_id: str) -> tuple[ApiKey, Tenant | None]:
        found = session.execute(
            select(ApiKey, Tenant)
            .outerjoin(Tenant, ApiKey.tenant_id == Tenant.id)
            .where(ApiKey.id == key_id)
        ).first()
        if found is None:
            raise UnknownKey(f"no key with id '{key_id}' (see `forgeline keys list`)")
        return found[0], found[1]

    def principal(self, key_id: str) -> tuple[str, Principal | None]:
        """The stored hash of a key and who it speaks for (None when revoked)."""
        with self.db.read() as session:
            key, owner = self._get(session, key_id)
        principal = None
        if key.revoked_at is None:
            principal = Principal(
                key_id=key.id,
                tenant_id=owner.id if owner else None,
                tenant=owner.name if owner else None,
                plan=owner.plan if owner else None,
                models=frozenset(key.models),
                actions=frozenset(key.actions),
                is_admin=key.is_admin,
                expires_at=key.expires_at,
            )
        return key.secret_hash, principal


def _info(key: ApiKey, owner: Tenant | None) -> KeyInfo:
    return KeyInfo(
        id=key.id,
        tenant=owner.name if owner else None,
        plan=owner.plan if owner else None,
        models=list(key.models),
        actions=list(key.actions),
        is_admin=key.is_admin,
        created_at=key.created_at,
        expires_at=key.expires_at,
        revoked_at=key.revoked_at,
        replaces=key.replaces,
    )


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


class Authenticator:
    """Checks bearer tokens against the key store, caching each key for ``ttl`` seconds.

    The cache keeps the database off the hot path; its short life is what bounds how long a
    key revoked elsewhere (by the CLI, or by another server process) keeps working.
    """

    def __init__(
        self,
        keys: KeyStore,
        ttl: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        admin_key: str | None = None,
    ) -> None:
        self.keys = keys
        self.ttl = ttl
        self.clock = clock
        admin = admin_key if admin_key is not None else os.environ.get(ADMIN_KEY_ENV)
        self._admin_digest = _digest(admin) if admin else None
        self._cache: dict[str, tuple[float, str, Principal | None]] = {}

    async def authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise AuthError(401, "missing_key", "send an API key: 'Authorization: Bearer <key>'")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthError(
                401, "invalid_authorization", "the Authorization header must be 'Bearer <key>'"
            )
        digest = _digest(token)
        if self._admin_digest is not None and hmac.compare_digest(digest, self._admin_digest):
            return _ENV_ADMIN
        match = _TOKEN.match(token)
        if match is None:
            raise AuthError(401, "invalid_key", "this is not a Forgeline API key")
        key_id = match.group(1)
        found = self._cached(key_id)
        if found is None:
            # Off the event loop: on PostgreSQL this is a network round trip per key and TTL.
            found = await asyncio.to_thread(self._fetch, key_id)
        stored, principal = found
        if not hmac.compare_digest(digest, stored):
            raise AuthError(401, "invalid_key", "the API key is not valid")
        if principal is None:
            raise AuthError(401, "revoked_key", f"key {key_id} has been revoked")
        if principal.expires_at is not None and principal.expires_at <= utcnow():
            raise AuthError(401, "expired_key", f"key {key_id} expired at {principal.expires_at}Z")
        return principal

    def _cached(self, key_id: str) -> tuple[str, Principal | None] | None:
        cached = self._cache.get(key_id)
        if cached is not None and self.clock() - cached[0] < self.ttl:
            return cached[1], cached[2]
        return None

    def _fetch(self, key_id: str) -> tuple[str, Principal | None]:
        now = self.clock()
        try:
            stored, principal = self.keys.principal(key_id)
        except UnknownKey:
            # An unknown id is cached too, so guessing ids cannot hammer the database.
            stored, principal = "", None
        if len(self._cache) > 100_000:
            self._cache.clear()
        self._cache[key_id] = (now, stored, principal)
        return stored, principal

    def forget(self, key_id: str) -> None:
        """Drop a cached key at once, e.g. after this process revoked it."""
        self._cache.pop(key_id, None)
