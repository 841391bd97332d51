"""The audit log as a user meets it: keys changed from the CLI and over HTTP through two real
servers sharing one database (SQLite file or PostgreSQL), refused admin requests, one chain
that `forgeline audit verify` accepts, and an edit it names."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from forgeline.db import Database
from tests.databases import database_urls, disposable_database
from tests.e2e.conftest import create_key, run_cli, running_server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("audit")
    run_cli("init", "credit", "--template", "tabular-classification", cwd=root)
    project = root / "credit"
    run_cli("train", cwd=project)
    return project


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize("kind", database_urls())
def test_cli_and_two_servers_keep_one_verified_chain(
    project: Path, kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with disposable_database(kind, tmp_path) as url:
        monkeypatch.setenv("FORGELINE_DATABASE_URL", url)  # the CLI's and the servers'
        admin = create_key(project, "--admin")
        customer = create_key(project, "--tenant", "acme", "--plan", "pro")
        admin_id, customer_id = admin.split("_")[1], customer.split("_")[1]
        forged = f"fl_{customer_id}_{'B' * 43}"
        with running_server(project) as first, running_server(project) as second:
            servers = (first, second)

            def create(number: int) -> int:
                return httpx.post(
                    f"{servers[number % 2]}/admin/v1/keys",
                    json={"tenant": f"tenant-{number}", "plan": "pro"},
                    headers=_bearer(admin),
                    timeout=60,
                ).status_code

            with ThreadPoolExecutor(max_workers=8) as pool:  # appends from two processes
                assert set(pool.map(create, range(8))) == {201}
            rotated = httpx.post(
                f"{first}/admin/v1/keys/{customer_id}/rotate", json={}, headers=_bearer(admin)
            ).json()["key"]
            revoke = f"{second}/admin/v1/keys/{rotated.split('_')[1]}/revoke"
            assert httpx.post(revoke, headers=_bearer(admin)).status_code == 200
            refused = [
                httpx.get(f"{first}/admin/v1/keys").status_code,
                httpx.get(f"{second}/admin/v1/keys", headers=_bearer(forged)).status_code,
                httpx.get(f"{first}/admin/v1/audit", headers=_bearer(customer)).status_code,
            ]
            assert refused == [401, 401, 403]
            page = httpx.get(f"{second}/admin/v1/audit?limit=1000", headers=_bearer(admin))
        events = page.json()["events"]
        assert len(events) == 2 + 8 + 2 + 3
        assert {e["actor"] for e in events} == {
            "cli",
            f"admin-key:{admin_id}",
            "anonymous",
            f"key:{customer_id}",
        }
        assert [e["event"] for e in events[:5]] == [
            "admin.auth_failed",
            "admin.auth_failed",
            "admin.auth_failed",
            "key.revoked",
            "key.rotated",
        ]
        listed = json.dumps(events)
        for secret in (admin, customer, rotated, forged):
            assert secret.rsplit("_", 1)[1] not in listed

        assert run_cli("audit", "verify", cwd=project).stdout.startswith("OK: 15 rows")
        db = Database(url)
        with db.engine.begin() as connection:
            if db.is_sqlite:
                connection.exec_driver_sql("DROP TRIGGER audit_log_no_update")
            else:
                connection.exec_driver_sql("DROP TRIGGER audit_log_append_only ON audit_log")
            connection.exec_driver_sql("UPDATE audit_log SET actor = 'cli' WHERE id = 5")
        db.dispose()
        broken = run_cli("audit", "verify", cwd=project, check=False)
        assert broken.returncode == 1
        assert "audit log broken at row 5: edited" in broken.stderr
