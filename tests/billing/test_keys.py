from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from forgeline import audit
from forgeline.billing.auth import Authenticator
from forgeline.billing.keys import (
    MAX_KEY_LIFETIME,
    ApiKeyError,
    AuthError,
    KeyConflict,
    KeyStore,
    Principal,
    UnknownKey,
    digest,
    duration,
)
from forgeline.config.service import PlanConfig
from forgeline.db import Database
from forgeline.db.tables import ApiKey, AuditEntry
from forgeline.errors import ConfigError


def _authenticate(auth: Authenticator, authorization: str) -> Principal:
    return asyncio.run(auth.authenticate(authorization))


PLANS = {"free": PlanConfig(included_units=10, hard_cap=True), "pro": PlanConfig()}


def test_only_a_hash_of_the_key_is_stored(db: Database) -> None:
    store = KeyStore(db, PLANS)
    assert not store.exist()
    token, info = store.create(tenant="acme", plan="free")
    assert store.exist()
    assert token.startswith(f"fl_{info.id}_") and len(token) == 3 + 12 + 1 + 43
    with db.read() as session:
        row = session.scalars(select(ApiKey)).one()
    assert row.secret_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in repr(info) and token not in repr(store.list())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tenant": "new"}, "tenant 'new' is new: give its plan with --plan"),
        ({"tenant": "new", "plan": "gold"}, "no plan 'gold' (plans: free, pro)"),
        ({"tenant": "Acme Inc", "plan": "pro"}, "must be lowercase"),
        ({"tenant": "acme", "plan": "pro", "admin": True}, "give --tenant for a customer key"),
        ({"tenant": None}, "give --tenant for a customer key, or --admin"),
        ({"tenant": "acme", "actions": ["delete"]}, "unknown delete"),
        ({"tenant": "acme", "models": ["Bad Name"]}, "'Bad Name' is not a model name"),
        # An empty scope must never widen to everything.
        ({"tenant": "acme", "models": []}, "--models: give at least one model"),
        ({"tenant": "acme", "actions": []}, "--actions: give at least one action"),
        # re.match with '$' accepts a trailing newline: 'acme\n' would be a second tenant.
        ({"tenant": "acme\n", "plan": "pro"}, "must be lowercase"),
        ({"tenant": "acme", "models": ["credit\n"]}, "is not a model name"),
        (
            {"tenant": "acme", "expires_at": datetime(9999, 1, 1)},
            "a key may live at most 3650 days",
        ),
    ],
)
def test_bad_key_requests_say_what_is_wrong(
    db: Database, kwargs: dict[str, object], message: str
) -> None:
    store = KeyStore(db, PLANS)
    store.create(tenant="acme", plan="free")
    with pytest.raises(ApiKeyError, match=message.replace("(", r"\(").replace(")", r"\)")):
        store.create(**kwargs)  # type: ignore[arg-type]


def test_a_tenant_keeps_its_plan(db: Database) -> None:
    store = KeyStore(db, PLANS)
    store.create(tenant="acme", plan="free")
    _, second = store.create(tenant="acme")  # the plan may be left out for a known tenant
    assert second.plan == "free"
    with pytest.raises(ApiKeyError, match="tenant 'acme' is on plan 'free'"):
        store.create(tenant="acme", plan="pro")


def test_unknown_key_ids_are_refused_and_cached(db: Database) -> None:
    store = KeyStore(db, PLANS)
    with pytest.raises(UnknownKey, match="no key with id 'abc'"):
        store.revoke("abc")
    auth = Authenticator(store, admin_key="")
    token, info = store.create(tenant="acme", plan="pro")
    assert _authenticate(auth, f"Bearer {token}").tenant == "acme"
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    with pytest.raises(AuthError, match="not valid"):
        _authenticate(auth, f"Bearer {tampered}")
    with pytest.raises(AuthError, match="not a Forgeline API key"):
        _authenticate(auth, "Bearer hello")
    assert _authenticate(auth, f"bearer {token}").key_id == info.id  # the scheme is case-blind


def test_revocation_reaches_a_cached_authenticator_within_its_ttl(db: Database) -> None:
    clock = [0.0]
    store = KeyStore(db, PLANS)
    auth = Authenticator(store, ttl=0.5, clock=lambda: clock[0], admin_key="")
    token, info = store.create(tenant="acme", plan="pro")
    _authenticate(auth, f"Bearer {token}")
    store.revoke(info.id)
    _authenticate(auth, f"Bearer {token}")  # still cached
    clock[0] = 0.5
    with pytest.raises(AuthError, match="revoked") as refused:
        _authenticate(auth, f"Bearer {token}")
    assert refused.value.status == 401


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 1e9, -1.0])
def test_durations_out_of_range_are_refused_not_overflowed(value: float) -> None:
    with pytest.raises(ApiKeyError, match="a duration must be 0 to 3650 days"):
        duration(days=value)
    assert duration(hours=24) == timedelta(days=1)


def test_rotation_bounds_the_overlap(db: Database) -> None:
    store = KeyStore(db, PLANS)
    _, info = store.create(tenant="acme", plan="free")
    with pytest.raises(ApiKeyError, match="overlap"):
        store.rotate(info.id, MAX_KEY_LIFETIME + timedelta(days=1))


def test_an_empty_scope_survives_rotation_unchanged(db: Database) -> None:
    store = KeyStore(db, PLANS)
    _, scoped = store.create(tenant="acme", plan="free", models=["credit"], actions=["predict"])
    _, rotated = store.rotate(scoped.id, timedelta(hours=1))
    assert (rotated.models, rotated.actions) == (["credit"], ["predict"])
    _, everything = store.create(tenant="acme")
    _, rotated = store.rotate(everything.id, timedelta(hours=1))
    assert rotated.models == ["*"]
    assert rotated.actions == ["explain", "generate", "predict", "redact"]


def test_a_short_admin_key_is_refused(db: Database) -> None:
    with pytest.raises(ConfigError, match="at least 32"):
        Authenticator(KeyStore(db, PLANS), admin_key="hunter2")
    Authenticator(KeyStore(db, PLANS), admin_key="x" * 32)


def test_made_up_key_ids_cannot_evict_real_keys_from_the_cache(db: Database) -> None:
    store = KeyStore(db, PLANS)
    token, _ = store.create(tenant="acme", plan="free")
    clock = [0.0]
    auth = Authenticator(store, ttl=60, clock=lambda: clock[0], admin_key="", cache_size=100)
    _authenticate(auth, f"Bearer {token}")
    lookups: list[str] = []
    real_principal = store.principal

    def counting(key_id: str) -> tuple[str, Principal | None]:
        lookups.append(key_id)
        return real_principal(key_id)

    store.principal = counting  # type: ignore[method-assign]
    for i in range(auth._unknown.size + 50):
        with pytest.raises(AuthError):
            _authenticate(auth, f"Bearer fl_{i:012x}_{'A' * 43}")
    lookups.clear()
    _authenticate(auth, f"Bearer {token}")
    assert lookups == []  # still cached


def _audit_rows(db: Database) -> list[AuditEntry]:
    with db.read() as session:
        return list(session.scalars(select(AuditEntry).order_by(AuditEntry.id)))


def test_key_changes_are_audited_with_their_actor_and_never_the_key(db: Database) -> None:
    store = KeyStore(db, PLANS)
    token, created = store.create(tenant="acme", plan="pro", models=["credit"])
    rotated_token, rotated = store.rotate(created.id, timedelta(hours=1), "admin-key:env-admin")
    store.revoke(rotated.id)
    store.revoke(rotated.id)  # already revoked: nothing changes, nothing is recorded
    with pytest.raises(KeyConflict):
        store.rotate(rotated.id, timedelta(hours=1))  # refused: its transaction records nothing
    rows = _audit_rows(db)
    assert [(row.event, row.actor, row.subject) for row in rows] == [
        ("key.created", "cli", f"key:{created.id}"),
        ("key.rotated", "admin-key:env-admin", f"key:{created.id}"),
        ("key.revoked", "cli", f"key:{rotated.id}"),
    ]
    created_details = json.loads(rows[0].details)
    assert created_details["tenant"] == "acme" and created_details["models"] == ["credit"]
    assert json.loads(rows[1].details)["new_key"] == rotated.id
    stored = " ".join(f"{row.subject} {row.details} {row.actor}" for row in rows)
    for secret in (token, rotated_token, token.rsplit("_", 1)[1], digest(token)):
        assert secret not in stored
    with db.read() as session:
        assert audit.verify(session).ok
