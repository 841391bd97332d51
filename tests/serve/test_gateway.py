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

from forgeline.billing.keys import Principal, utcnow
from forgeline.config.service import BillingConfig, PlanConfig, ServeConfig
from forgeline.db import Database
from forgeline.db.tables import UsageRecord
from forgeline.registry import ModelRegistry
from forgeline.serve import create_app
from forgeline.serve.gateway import Gateway
from forgeline.tasks.text_classification import TextClassifier
from tests.serve.test_app import _registry_with, _wait_until_ready

ADMIN_KEY = "test-admin-secret-of-at-least-32-chars"
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
    # Without a key nothing else is looked at, not even the body (JSON or not).
    for content_type in ("application/json", "text/plain"):
        refused = client.post(PREDICT, content=b"{not json", headers={"content-type": content_type})
        assert refused.status_code == 401


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
    assert client.get("/v1/models", headers=other_model).json()["data"] == []
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


def test_failed_authentications_are_throttled_per_address(
    client: TestClient, gateway: Gateway
) -> None:
    """Guessing keys (each well-formed guess costs a lookup) is cut to a trickle: after a burst
    of failures the address gets 429 without any lookup, but keys seen to exist still work
    (customers behind one proxy must not be locked out by one of them)."""
    regular = _key(gateway)
    assert client.get("/v1/models", headers=regular).status_code == 200
    lookups: list[str] = []
    real = gateway.keys.principal

    def counting(key_id: str) -> tuple[str, Principal | None]:
        lookups.append(key_id)
        return real(key_id)

    gateway.keys.principal = counting  # type: ignore[method-assign]
    statuses = [
        client.get(
            "/v1/models", headers={"Authorization": f"Bearer fl_{i:012x}_{'A' * 43}"}
        ).status_code
        for i in range(30)
    ]
    assert statuses[:20] == [401] * 20 and set(statuses[20:]) == {429}
    assert len(lookups) <= 21
    assert client.get("/v1/models", headers=regular).status_code == 200
    throttled = client.get("/v1/models", headers=_key(gateway))
    assert throttled.status_code == 429  # a key never seen from here is not looked up
    assert throttled.json()["error"]["code"] == "too_many_failed_attempts"
    assert int(throttled.headers["retry-after"]) >= 1


def test_admin_keys_are_rate_limited(client: TestClient) -> None:
    from concurrent.futures import ThreadPoolExecutor

    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(
            pool.map(lambda _: client.get("/admin/v1/keys", headers=admin).status_code, range(80))
        )
    elapsed = time.monotonic() - started
    assert set(statuses) == {200, 429}
    # A burst of 40, then 20 a second.
    assert statuses.count(200) <= 40 + 20 * elapsed + 1


def test_admin_api_refuses_empty_scopes_unbounded_numbers_and_names_with_newlines(
    client: TestClient,
) -> None:
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    for body, field in [
        ({"tenant": "acme", "plan": "pro", "models": []}, "models"),
        ({"tenant": "acme", "plan": "pro", "actions": []}, "actions"),
        ({"tenant": "acme", "plan": "pro", "expires_in_days": 1e9}, "expires_in_days"),
        ({"tenant": "acme\n", "plan": "pro"}, "tenant"),
        ({"tenant": "acme", "plan": "pro", "models": ["credit\n"]}, "models.0"),
        ({"tenant": "acme", "plan": "pro", "expires_in_days": "7"}, "expires_in_days"),
    ]:
        refused = client.post("/admin/v1/keys", json=body, headers=admin)
        assert refused.status_code == 422, body
        assert refused.json()["error"]["message"].startswith(field), refused.json()
    created = client.post("/admin/v1/keys", json={"tenant": "acme", "plan": "pro"}, headers=admin)
    key_id = created.json()["info"]["id"]
    for overlap in ("24", 1e12, -1):
        rotated = client.post(
            f"/admin/v1/keys/{key_id}/rotate", json={"overlap_hours": overlap}, headers=admin
        )
        assert rotated.status_code == 422, overlap
    stray = client.get(
        "/admin/v1/usage", params={"tenant": "acme\n", "month": "2026-11"}, headers=admin
    )
    assert stray.status_code == 422


def test_admin_times_are_rfc3339_with_a_time_zone(client: TestClient) -> None:
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    created = client.post(
        "/admin/v1/keys",
        json={"tenant": "acme", "plan": "pro", "expires_in_days": 1},
        headers=admin,
    ).json()["info"]
    for field in ("created_at", "expires_at"):
        assert created[field].endswith("Z") or created[field].endswith("+00:00"), created[field]


def test_a_retry_with_the_rotated_key_is_replayed_not_billed_again(
    client: TestClient, gateway: Gateway, db: Database
) -> None:
    old = _key(gateway)
    old_id = gateway.keys.list()[0].id
    body = {"inputs": ["refund please"]}
    first = client.post(PREDICT, json=body, headers={**old, "Idempotency-Key": "order-7"})
    token, _ = gateway.keys.rotate(old_id, timedelta(hours=1))
    new = {"Authorization": f"Bearer {token}", "Idempotency-Key": "order-7"}
    retry = client.post(PREDICT, json=body, headers=new)
    assert retry.headers["idempotent-replayed"] == "true"
    assert retry.headers["x-request-id"] == first.headers["x-request-id"]
    assert len(_ledger(db)) == 1


def test_metrics_and_probes_say_nothing_to_anonymous_callers(client: TestClient) -> None:
    ready = client.get("/readyz").json()
    assert ready == {"status": "ready", "models": 1}
    assert client.get("/metrics").status_code == 401
    assert (
        client.get("/metrics", headers={"Authorization": f"Bearer {ADMIN_KEY}"}).status_code == 200
    )
    # The public document has no model names or input schemas; a key's document has its own.
    public = client.get("/openapi.json").json()
    assert "/v1/models/demo/predict" not in public["paths"]
    assert client.get("/v1/openapi.json").status_code == 401


def test_a_key_gets_a_typed_document_of_the_models_it_may_use(
    client: TestClient, gateway: Gateway
) -> None:
    typed = client.get("/v1/openapi.json", headers=_key(gateway)).json()
    assert "/v1/models/demo/predict" in typed["paths"]
    assert "/v1/models/{name}/predict" not in typed["paths"]
    other = client.get("/v1/openapi.json", headers=_key(gateway, models=["other"])).json()
    assert "/v1/models/demo/predict" not in other["paths"]


def test_a_redis_outage_answers_without_its_address_or_password(
    registry: ModelRegistry,
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("FORGELINE_ADMIN_KEY", ADMIN_KEY)
    # A port nothing listens on, with a password in the query string.
    unreachable = "redis://127.0.0.1:9/0?password=hunter2hunter2"
    gateway = Gateway(db, BILLING, redis_url=unreachable)
    with TestClient(create_app(registry, ServeConfig(), gateway=gateway)) as test_client:
        _wait_until_ready(test_client)
        response = test_client.get("/v1/models", headers=_key(gateway))
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "rate_limiter_unavailable"
    assert "127.0.0.1" not in response.text and "hunter2" not in response.text
    assert response.headers["x-request-id"] in error["message"]
    assert "127.0.0.1:9" in caplog.text and "hunter2" not in caplog.text


def test_a_body_without_a_key_is_never_read(client: TestClient) -> None:
    """The key is checked from the headers before any of the body is read: an oversized,
    chunked upload without a key gets 401, not 413 after the server has taken it in."""

    def upload() -> Iterator[bytes]:
        for _ in range(40):
            yield b"x" * 65_536  # 2.5 MB in all, over max_body_bytes

    refused = client.post(PREDICT, content=upload(), headers={"content-type": "application/json"})
    assert refused.status_code == 401
