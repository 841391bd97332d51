"""Keys, scopes, rate limits, quotas, idempotency and metering through the HTTP API, and the
admin API, in-process against SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from forgeline.billing.keys import utcnow
from forgeline.config.service import BillingConfig, PlanConfig, ServeConfig
from forgeline.db import Database
from forgeline.db.tables import UsageRecord
from forgeline.registry import ModelRegistry
from forgeline.serve import create_app
from forgeline.serve.gateway import Gateway
from forgeline.tasks.text_classification import TextClassifier
from tests.serve.test_app import _registry_with, _wait_until_ready

ADMIN_KEY = "test-admin-secret"
BILLING = BillingConfig(
    plans={
        "pro": PlanConfig(
            monthly_fee="49.00",
            included_units=1000,
            overage_price="0.50",
            requests_per_second=1000,
        ),
        "tiny": PlanConfig(included_units=3, hard_cap=True, requests_per_second=1000),
        "slow": PlanConfig(requests_per_second=1, burst=2),
    }
)
PREDICT = "/v1/models/demo/predict"


@pytest.fixture
def registry(tmp_path: Path, untrained_classifier: TextClassifier) -> ModelRegistry:
    return _registry_with(tmp_path, untrained_classifier)


@pytest.fixture
def gateway(db: Database, monkeypatch: pytest.MonkeyPatch) -> Gateway:
    monkeypatch.setenv("FORGELINE_ADMIN_KEY", ADMIN_KEY)
    return Gateway(db, BILLING)


@pytest.fixture
def client(registry: ModelRegistry, gateway: Gateway) -> Iterator[TestClient]:
    with TestClient(create_app(registry, ServeConfig(), gateway=gateway)) as test_client:
        _wait_until_ready(test_client)
        yield test_client


def _key(
    gateway: Gateway, tenant: str = "acme", plan: str = "pro", **scope: object
) -> dict[str, str]:
    token, _ = gateway.keys.create(tenant=tenant, plan=plan, **scope)  # type: ignore[arg-type]
    return {"Authorization": f"Bearer {token}"}


def _ledger(db: Database) -> list[UsageRecord]:
    with db.read() as session:
        return list(session.scalars(select(UsageRecord).order_by(UsageRecord.id)))


def test_calls_without_a_valid_key_are_refused_with_a_reason(client: TestClient) -> None:
    missing = client.get("/v1/models")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert missing.json()["error"]["code"] == "missing_key"
    assert missing.headers["x-request-id"]
    wrong_scheme = client.get("/v1/models", headers={"Authorization": "Basic abc"})
    assert wrong_scheme.json()["error"]["code"] == "invalid_authorization"
    forged = client.get(
        "/v1/models", headers={"Authorization": "Bearer fl_000000000000_" + "A" * 43}
    )
    assert (forged.status_code, forged.json()["error"]["code"]) == (401, "invalid_key")
    # Without a key nothing else is looked at, not even the body.
    assert client.post(PREDICT, content=b"{not json").status_code == 401


def test_a_billable_call_is_answered_and_recorded_once(
    client: TestClient, gateway: Gateway, db: Database
) -> None:
    headers = _key(gateway)
    response = client.post(
        PREDICT, json={"inputs": ["refund please", "where is it"]}, headers=headers
    )
    assert response.status_code == 200
    assert len(response.json()["predictions"]) == 2
    [record] = _ledger(db)
    assert record.request_id == response.headers["x-request-id"]
    assert (record.model, record.action, record.units) == ("demo", "predict", 2)
    assert record.period == utcnow().strftime("%Y-%m")


def test_failed_calls_are_not_billed(client: TestClient, gateway: Gateway, db: Database) -> None:
    headers = _key(gateway)
    assert client.post(PREDICT, json={"inputs": []}, headers=headers).status_code == 422
    assert client.post(PREDICT, json={"inputs": ["x" * 2001]}, headers=headers).status_code == 422
    assert (
        client.post("/v1/models/nope/predict", json={"inputs": ["a"]}, headers=headers).status_code
        == 404
    )
    assert _ledger(db) == []


def test_scopes_limit_models_and_actions(client: TestClient, gateway: Gateway) -> None:
    other_model = _key(gateway, models=["other"])
    refused = client.post(PREDICT, json={"inputs": ["hi"]}, headers=other_model)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "model_not_allowed"
    assert client.get("/v1/models", headers=other_model).json() == []
    explain_only = _key(gateway, actions=["explain"])
    refused = client.post(PREDICT, json={"inputs": ["hi"]}, headers=explain_only)
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "action_not_allowed")
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    assert client.post(PREDICT, json={"inputs": ["hi"]}, headers=admin).status_code == 403


def test_revoked_and_expired_keys_stop_working(client: TestClient, gateway: Gateway) -> None:
    headers = _key(gateway)
    assert client.get("/v1/models", headers=headers).status_code == 200
    key_id = gateway.keys.list()[0].id
    gateway.keys.revoke(key_id)  # as the CLI does, beside the running server
    time.sleep(gateway.auth.ttl + 0.05)
    revoked = client.get("/v1/models", headers=headers)
    assert (revoked.status_code, revoked.json()["error"]["code"]) == (401, "revoked_key")
    expired = _key(gateway, expires_at=utcnow() - timedelta(seconds=1))
    assert client.get("/v1/models", headers=expired).json()["error"]["code"] == "expired_key"


def test_rotation_keeps_the_old_key_working_for_the_overlap(
    client: TestClient, gateway: Gateway
) -> None:
    old = _key(gateway)
    old_id = gateway.keys.list()[0].id
    token, info = gateway.keys.rotate(old_id, timedelta(hours=1))
    assert info.replaces == old_id
    new = {"Authorization": f"Bearer {token}"}
    assert client.get("/v1/models", headers=new).status_code == 200
    assert client.get("/v1/models", headers=old).status_code == 200
    gateway.keys.rotate(info.id, timedelta(0))
    gateway.auth.forget(info.id)
    assert client.get("/v1/models", headers=new).json()["error"]["code"] == "expired_key"


def test_rate_limit_answers_429_with_retry_after(client: TestClient, gateway: Gateway) -> None:
    headers = _key(gateway, tenant="slowco", plan="slow")
    statuses = [client.get("/v1/models", headers=headers).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    limited = client.get("/v1/models", headers=headers)
    assert limited.headers["retry-after"] == "1"
    assert "rate limit of plan 'slow'" in limited.json()["error"]["message"]


def test_hard_cap_refuses_calls_beyond_the_quota(
    client: TestClient, gateway: Gateway, db: Database
) -> None:
    headers = _key(gateway, tenant="small", plan="tiny")
    first = client.post(PREDICT, json={"inputs": ["a", "b"]}, headers=headers)
    assert first.status_code == 200 and first.headers["x-quota-remaining"] == "1"
    over = client.post(PREDICT, json={"inputs": ["c", "d"]}, headers=headers)
    assert over.status_code == 402 and over.headers["x-quota-remaining"] == "1"
    assert over.json()["error"]["message"] == (
        "monthly quota of plan 'tiny' is 3 units; 2 are used and this call needs 2"
    )
    assert client.post(PREDICT, json={"inputs": ["e"]}, headers=headers).status_code == 200
    assert sum(r.units for r in _ledger(db)) == 3


def test_idempotent_retries_get_the_first_response_and_are_billed_once(
    client: TestClient, gateway: Gateway, db: Database
) -> None:
    headers = {**_key(gateway), "Idempotency-Key": "order-42"}
    body = {"inputs": ["refund please"]}
    first = client.post(PREDICT, json=body, headers=headers)
    retry = client.post(PREDICT, json=body, headers=headers)
    assert retry.status_code == 200 and retry.json() == first.json()
    assert retry.headers["x-request-id"] == first.headers["x-request-id"]
    assert retry.headers["idempotent-replayed"] == "true"
    assert [r.request_id for r in _ledger(db)] == [first.headers["x-request-id"]]
    reused = client.post(PREDICT, json={"inputs": ["another"]}, headers=headers)
    assert (reused.status_code, reused.json()["error"]["code"]) == (422, "idempotency_key_reused")


def test_a_call_the_ledger_cannot_record_is_not_answered(
    client: TestClient, gateway: Gateway, db: Database
) -> None:
    headers = _key(gateway)
    with db.engine.begin() as connection:
        connection.execute(text("DROP TABLE usage_records"))
    response = client.post(PREDICT, json={"inputs": ["refund please"]}, headers=headers)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "metering_unavailable"
    assert "predictions" not in response.text


def test_admin_api_manages_keys_usage_and_invoices(client: TestClient, gateway: Gateway) -> None:
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    created = client.post("/admin/v1/keys", json={"tenant": "acme", "plan": "pro"}, headers=admin)
    assert created.status_code == 201
    key, key_id = created.json()["key"], created.json()["info"]["id"]
    customer = {"Authorization": f"Bearer {key}"}
    assert client.get("/admin/v1/keys", headers=customer).status_code == 403
    assert (
        client.post(PREDICT, json={"inputs": ["a", "b", "c"]}, headers=customer).status_code == 200
    )

    [listed] = client.get("/admin/v1/keys", headers=admin).json()
    assert listed["id"] == key_id and listed["status"] == "active"
    assert "secret_hash" not in listed and key not in created.text.replace(key, "", 1)
    month = utcnow().strftime("%Y-%m")
    [usage] = client.get(f"/admin/v1/usage?tenant=acme&month={month}", headers=admin).json()
    assert (usage["model"], usage["calls"], usage["units"]) == ("demo", 1, 3)
    [invoice] = client.get(f"/admin/v1/invoices?month={month}", headers=admin).json()
    assert invoice["tenant"] == "acme" and invoice["units"] == 3 and invoice["total"] == 4900
    csv_text = client.get(f"/admin/v1/invoices?month={month}&format=csv", headers=admin).text
    assert csv_text.startswith("tenant,plan,month,currency,kind")
    bad_month = client.get("/admin/v1/usage?tenant=acme&month=2026-13", headers=admin)
    assert bad_month.status_code == 422 and "YYYY-MM" in bad_month.json()["error"]["message"]

    revoked = client.post(f"/admin/v1/keys/{key_id}/revoke", headers=admin)
    assert revoked.json()["status"] == "revoked"
    assert client.get("/v1/models", headers=customer).status_code == 401  # at once, same process
    unknown = client.post("/admin/v1/keys/ffffffffffff/revoke", headers=admin)
    assert unknown.status_code == 404
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/admin/v1/keys", "/admin/v1/usage", "/admin/v1/invoices"} <= set(paths)
