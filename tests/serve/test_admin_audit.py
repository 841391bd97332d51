"""The audit log through the admin API, in-process against SQLite and PostgreSQL: key changes
made over HTTP carry the admin key that made them, refused admin requests are recorded without
the secret and without letting a flood of them become a flood of writes, and
GET /admin/v1/audit lists, filters and pages."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from forgeline import audit
from forgeline.billing.ratelimit import LocalRateLimiter
from forgeline.config.service import FailedAuthLimit, PlanConfig, ServeConfig
from forgeline.db import Database
from forgeline.db.tables import AuditEntry
from forgeline.registry import ModelRegistry
from forgeline.serve import create_app
from forgeline.serve import gateway as gateway_module
from forgeline.serve.gateway import Gateway
from forgeline.tasks.text_classification import TextClassifier
from tests.serve.test_app import _registry_with, _wait_until_ready
from tests.serve.test_gateway import ADMIN_KEY, BILLING

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


class FrozenClock:
    """The rate limiter's clock, moved by hand: buckets refill only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def gateway(db: Database, monkeypatch: pytest.MonkeyPatch, clock: FrozenClock) -> Gateway:
    monkeypatch.setenv("FORGELINE_ADMIN_KEY", ADMIN_KEY)
    gateway = Gateway(db, BILLING)
    gateway.limiter = LocalRateLimiter(clock=clock)
    return gateway


def _client(tmp_path: Path, model: TextClassifier, gateway: Gateway) -> TestClient:
    registry: ModelRegistry = _registry_with(tmp_path, model)
    return TestClient(create_app(registry, ServeConfig(), gateway=gateway))


@pytest.fixture
def client(
    tmp_path: Path, untrained_classifier: TextClassifier, gateway: Gateway
) -> Iterator[TestClient]:
    with _client(tmp_path, untrained_classifier, gateway) as test_client:
        _wait_until_ready(test_client)
        yield test_client


def _rows(db: Database) -> list[AuditEntry]:
    with db.read() as session:
        return list(session.scalars(select(AuditEntry).order_by(AuditEntry.id)))


def test_key_changes_over_http_are_audited_and_listed(client: TestClient, db: Database) -> None:
    created = client.post("/admin/v1/keys", json={"tenant": "acme", "plan": "pro"}, headers=ADMIN)
    key_id = created.json()["info"]["id"]
    rotated = client.post(f"/admin/v1/keys/{key_id}/rotate", json={}, headers=ADMIN).json()
    client.post(f"/admin/v1/keys/{rotated['info']['id']}/revoke", headers=ADMIN)

    page = client.get("/admin/v1/audit", headers=ADMIN).json()
    assert [(e["event"], e["actor"]) for e in page["events"]] == [
        ("key.revoked", "admin-key:env-admin"),
        ("key.rotated", "admin-key:env-admin"),
        ("key.created", "admin-key:env-admin"),
    ]
    assert page["next_before"] is None
    newest = page["events"][0]
    assert newest["time"].endswith("Z") and newest["details"] == {"tenant": "acme"}
    assert [e["hash"] for e in page["events"][1:]] == [e["prev_hash"] for e in page["events"][:-1]]

    first = client.get("/admin/v1/audit?limit=2", headers=ADMIN).json()
    assert [e["id"] for e in first["events"]] == [3, 2] and first["next_before"] == 2
    rest = client.get(f"/admin/v1/audit?limit=2&before={first['next_before']}", headers=ADMIN)
    assert [e["id"] for e in rest.json()["events"]] == [1] and rest.json()["next_before"] is None
    only = client.get("/admin/v1/audit?event=key.rotated&since=2000-01-01", headers=ADMIN).json()
    assert [e["event"] for e in only["events"]] == ["key.rotated"]
    assert client.get("/admin/v1/audit?since=2999-01-01", headers=ADMIN).json()["events"] == []
    with db.read() as session:
        assert audit.verify(session).ok


def test_bad_audit_queries_say_what_is_wrong(client: TestClient) -> None:
    bad_since = client.get("/admin/v1/audit?since=2026-13-01", headers=ADMIN)
    assert bad_since.status_code == 422
    assert "not a date; write YYYY-MM-DD" in bad_since.json()["error"]["message"]
    bad_event = client.get("/admin/v1/audit?event=key.deleted", headers=ADMIN)
    assert bad_event.status_code == 422 and "key.created" in bad_event.json()["error"]["message"]
    assert client.get("/admin/v1/audit?limit=1001", headers=ADMIN).status_code == 422
    operation = client.get("/openapi.json").json()["paths"]["/admin/v1/audit"]["get"]
    assert operation["security"] == [{"apiKey": []}]
    assert {p["name"] for p in operation["parameters"]} == {"since", "event", "before", "limit"}
    assert {"401", "403", "429"} <= set(operation["responses"])


def test_refused_admin_requests_are_recorded_without_the_secret(
    client: TestClient, gateway: Gateway, db: Database
) -> None:
    customer, _ = gateway.keys.create(tenant="acme", plan="pro")
    customer_id = customer.split("_")[1]
    forged = f"fl_{customer_id}_{'A' * 43}"
    assert client.get("/admin/v1/keys").status_code == 401
    assert (
        client.get("/admin/v1/keys", headers={"Authorization": f"Bearer {forged}"}).status_code
        == 401
    )
    assert (
        client.get(
            "/admin/v1/audit", headers={"Authorization": "Bearer wrong-admin-password"}
        ).status_code
        == 401
    )
    revoke = f"/admin/v1/keys/{customer_id}/revoke"
    assert client.post(revoke, headers={"Authorization": f"Bearer {customer}"}).status_code == 403
    assert (
        client.get("/v1/models", headers={"Authorization": f"Bearer {forged}"}).status_code == 401
    )

    rows = [row for row in _rows(db) if row.event == "admin.auth_failed"]
    assert [(row.actor, row.subject) for row in rows] == [
        ("anonymous", "GET /admin/v1/keys"),
        (f"key:{customer_id}", "GET /admin/v1/keys"),
        ("anonymous", "GET /admin/v1/audit"),
        (f"key:{customer_id}", "POST /admin/v1/keys/{key_id}/revoke"),
    ]  # and nothing for the /v1 call
    reasons = [json.loads(row.details)["reason"] for row in rows]
    assert reasons == ["missing_key", "invalid_key", "invalid_key", "not_admin"]
    stored = " ".join(f"{row.actor} {row.subject} {row.details}" for row in _rows(db))
    for secret in (customer.rsplit("_", 1)[1], "A" * 43, "wrong-admin-password"):
        assert secret not in stored


def test_a_flood_of_refusals_writes_a_bounded_number_of_rows(
    client: TestClient, db: Database
) -> None:
    """One address: the failed-auth throttle's 429s come before any write."""
    statuses = [client.get("/admin/v1/keys").status_code for _ in range(30)]
    assert statuses == [401] * 20 + [429] * 10
    assert len(_rows(db)) == 20


def test_refusals_over_the_shared_cap_are_counted_in_the_next_row(
    tmp_path: Path,
    untrained_classifier: TextClassifier,
    db: Database,
    gateway: Gateway,
    clock: FrozenClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Many addresses (here: a lenient per-address limit) meet the cap shared by all."""
    gateway.failed_auth = FailedAuthLimit(requests_per_second=1000, burst=1000)
    monkeypatch.setattr(
        gateway_module, "AUDITED_REFUSALS", PlanConfig(requests_per_second=1, burst=3)
    )
    with _client(tmp_path, untrained_classifier, gateway) as test_client:
        _wait_until_ready(test_client)
        assert {test_client.get("/admin/v1/keys").status_code for _ in range(10)} == {401}
        assert len(_rows(db)) == 3
        clock.now += 1.0
        assert test_client.get("/admin/v1/keys").status_code == 401
    rows = _rows(db)
    assert len(rows) == 4
    assert json.loads(rows[-1].details)["unrecorded_before"] == 7
