"""API keys: create, list, revoke and rotate them (checking a bearer token is in auth.py).

Creating, revoking and rotating a key is recorded in the audit log (:mod:`forgeline.audit`) in
the transaction that makes the change, with who asked (``actor``: ``cli``, or the admin key of
an admin API call); the event holds the key's id, tenant and scopes, never the key.

A key reads ``fl_<id>_<secret>``. The id is public (it appears in listings, usage and logs) and
finds the row; the secret is 256 random bits. Only the SHA-256 of the whole key is stored: a
fast hash is enough because the secret is random, not a password that could be guessed, and
the comparison is constant-time. The key itself is shown once, when it is made.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from forgeline import audit
from forgeline.audit import CLI_ACTOR, AuditEvent
from forgeline.config.sections import is_name
from forgeline.config.service import PlanConfig
from forgeline.db import Database
from forgeline.db.tables import ApiKey, Tenant
from forgeline.errors import ForgelineError

ACTIONS = ("predict", "explain", "generate", "redact")
ALL_MODELS = "*"
"""An admin key from the environment is a password that opens every tenant's keys and bills:
it must be long enough that guessing it is hopeless (32 URL-safe characters: 190 bits)."""
MAX_KEY_LIFETIME = timedelta(days=3650)
TOKEN = re.compile(r"fl_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")


def utcnow() -> datetime:
    """Naive UTC, as every time in the database is."""
    return datetime.now(UTC).replace(tzinfo=None)


def duration(*, days: float = 0, hours: float = 0) -> timedelta:
    """A key lifetime or overlap, refused when it is not a finite span of at most
    :data:`MAX_KEY_LIFETIME` (``timedelta`` itself overflows, or rejects NaN, with a bare
    error)."""
    seconds = days * 86_400 + hours * 3_600
    if not 0 <= seconds <= MAX_KEY_LIFETIME.total_seconds():  # False for NaN too
        raise ApiKeyError(f"a duration must be 0 to {MAX_KEY_LIFETIME.days} days")
    return timedelta(seconds=seconds)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ApiKeyError(ForgelineError):
    """A key cannot be made, found or changed as asked."""


class UnknownKey(ApiKeyError):
    """No key has the id given."""


class KeyConflict(ApiKeyError):
    """The request is well formed, but what is stored refuses it (a revoked key to rotate, a
    tenant on another plan): the HTTP API answers 409."""


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

    def check_allowed(self, model: str | None, action: str) -> None:
        """403 unless the key may take ``action`` on ``model`` (None: an action on no model,
        such as redacting text, which only the key's actions scope)."""
        self.require_tenant()
        if action not in self.actions:
            raise AuthError(
                403,
                "action_not_allowed",
                f"key {self.key_id} may not {action} (allowed: {', '.join(sorted(self.actions))})",
            )
        if model is not None and ALL_MODELS not in self.models and model not in self.models:
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
        actor: str = CLI_ACTOR,
    ) -> tuple[str, KeyInfo]:
        """A new key and what a listing shows of it. The key is not stored and cannot be
        shown again."""
        with self.db.write() as session:
            token, info = self._add(
                session,
                tenant=tenant,
                plan=plan,
                models=models,
                actions=actions,
                admin=admin,
                expires_at=expires_at,
                replaces=None,
            )
            audit.record(session, AuditEvent.KEY_CREATED, actor, _subject(info.id), _scope(info))
        return token, info

    def _add(
        self,
        session: Session,
        *,
        tenant: str | None,
        plan: str | None,
        models: list[str] | None,
        actions: list[str] | None,
        admin: bool,
        expires_at: datetime | None,
        replaces: str | None,
    ) -> tuple[str, KeyInfo]:
        if admin == (tenant is not None):
            raise ApiKeyError("give --tenant for a customer key, or --admin for an admin key")
        # Only an absent scope means the default: an empty list must never widen to "all".
        if models is not None and not models:
            raise ApiKeyError("--models: give at least one model (leave it out for all models)")
        if actions is not None and not actions:
            raise ApiKeyError("--actions: give at least one action (leave it out for all)")
        scope_models = sorted(set(models)) if models is not None else [ALL_MODELS]
        for name in scope_models:
            if name != ALL_MODELS and not is_name(name):
                raise ApiKeyError(f"--models: {name!r} is not a model name")
        scope_actions = sorted(set(actions)) if actions is not None else list(ACTIONS)
        unknown = [a for a in scope_actions if a not in ACTIONS]
        if unknown:
            raise ApiKeyError(f"--actions: unknown {', '.join(unknown)}; use {', '.join(ACTIONS)}")
        if expires_at is not None and expires_at > utcnow() + MAX_KEY_LIFETIME:
            raise ApiKeyError(f"a key may live at most {MAX_KEY_LIFETIME.days} days")
        key_id = secrets.token_hex(6)
        token = f"fl_{key_id}_{secrets.token_urlsafe(32)}"
        tenant_row = self._tenant(session, tenant, plan) if tenant is not None else None
        row = ApiKey(
            id=key_id,
            tenant_id=tenant_row.id if tenant_row else None,
            secret_hash=digest(token),
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
        if not is_name(name):
            raise ApiKeyError(f"--tenant: {name!r} must be lowercase letters, digits, . _ -")
        row = session.scalar(select(Tenant).where(Tenant.name == name))
        if row is not None:
            if plan is not None and plan != row.plan:
                raise KeyConflict(
                    f"tenant '{name}' is on plan '{row.plan}'; a tenant has one plan "
                    f"(leave out --plan, or use another tenant name)"
                )
            return row
        if plan is None:
            raise KeyConflict(f"tenant '{name}' is new: give its plan with --plan")
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

    def revoke(self, key_id: str, actor: str = CLI_ACTOR) -> KeyInfo:
        """Revoke a key (recorded once: revoking it again changes nothing)."""
        with self.db.write() as session:
            key, owner = self._get(session, key_id, for_update=True)
            if key.revoked_at is None:
                key.revoked_at = utcnow()
                details = {"tenant": owner.name if owner else None}
                audit.record(session, AuditEvent.KEY_REVOKED, actor, _subject(key.id), details)
            return _info(key, owner)

    def rotate(
        self, key_id: str, overlap: timedelta, actor: str = CLI_ACTOR
    ) -> tuple[str, KeyInfo]:
        """A new key with the same tenant and scopes; the old one keeps working for
        ``overlap`` so clients can switch without downtime, then expires. One transaction:
        a crash cannot leave a new key beside an old one that never expires."""
        if not timedelta(0) <= overlap <= MAX_KEY_LIFETIME:
            raise ApiKeyError(f"the overlap must be 0 to {MAX_KEY_LIFETIME.days} days")
        with self.db.write() as session:
            old, owner = self._get(session, key_id, for_update=True)
            if old.revoked_at is not None:
                raise KeyConflict(f"key {key_id} is revoked; create a new key instead")
            if old.expires_at is not None and old.expires_at <= utcnow():
                raise KeyConflict(f"key {key_id} has expired; create a new key instead")
            token, info = self._add(
                session,
                tenant=owner.name if owner else None,
                plan=None,
                models=old.models if ALL_MODELS not in old.models else None,
                actions=None if old.is_admin else old.actions,
                admin=old.is_admin,
                expires_at=old.expires_at,
                replaces=old.id,
            )
            ends = utcnow() + overlap
            old.expires_at = ends if old.expires_at is None else min(old.expires_at, ends)
            details = {**_scope(info), "new_key": info.id, "old_expires_at": _iso(old.expires_at)}
            audit.record(session, AuditEvent.KEY_ROTATED, actor, _subject(old.id), details)
        return token, info

    @staticmethod
    def _get(
        session: Session, key_id: str, *, for_update: bool = False
    ) -> tuple[ApiKey, Tenant | None]:
        """The key and its tenant; ``for_update`` locks the key's row (PostgreSQL) so that a
        rotation and a revocation of one key cannot interleave."""
        query = (
            select(ApiKey, Tenant)
            .outerjoin(Tenant, ApiKey.tenant_id == Tenant.id)
            .where(ApiKey.id == key_id)
        )
        if for_update:
            query = query.with_for_update(of=ApiKey)
        found = session.execute(query).first()
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


def _subject(key_id: str) -> str:
    return f"key:{key_id}"


def _iso(moment: datetime | None) -> str | None:
    return f"{moment.isoformat(timespec='seconds')}Z" if moment is not None else None


def _scope(info: KeyInfo) -> dict[str, audit.DetailValue]:
    """What an audit event tells of a key: whose it is and what it may do; never the key."""
    return {
        "tenant": info.tenant,
        "plan": info.plan,
        "admin": info.is_admin,
        "models": info.models,
        "actions": info.actions,
        "expires_at": _iso(info.expires_at),
    }
