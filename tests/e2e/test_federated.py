"""A federation deployed as a user deploys it: `forgeline federated server` and one
`forgeline federated client` process per silo on free ports (Flower's SuperLink and SuperNodes),
over TLS, giving the model the simulation gives; and a silo killed mid-run that does not stop
it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.e2e.conftest import free_port, run_cli
from tests.federated.certificates import write_certificates
from tests.federated.conftest import federation_project

pytestmark = pytest.mark.e2e


def _forgeline(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "forgeline", *args],
        cwd=cwd,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # the client's SuperNode and ClientApps go with it
    )


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


@contextmanager
def _federation(
    root: Path, silos: list[str]
) -> Iterator[tuple[subprocess.Popen[str], dict[str, subprocess.Popen[str]]]]:
    port = free_port()
    coordinator = _forgeline("federated", "server", "--port", str(port), cwd=root)
    clients = {
        silo: _forgeline(
            "federated", "client", "--silo", silo, "--server", f"127.0.0.1:{port}", cwd=root
        )
        for silo in silos
    }
    try:
        yield coordinator, clients
    finally:
        for process in [coordinator, *clients.values()]:
            _stop(process)


def _coefficients(version: Path) -> list[float]:
    weights = json.loads((version / "model.logistic.json").read_text())
    return [*weights["coefficients"], weights["intercept"]]


def test_deployed_federation_over_tls_gives_the_simulated_model(tmp_path: Path) -> None:
    deployed, simulated = tmp_path / "deployed", tmp_path / "simulated"
    write_certificates(deployed / "certs")
    tls = "  tls: {certificate: certs/server.pem, private_key: certs/server.key, ca_certificate: certs/ca.pem}\n"
    for root in (deployed, simulated):
        federation_project(root, rows=300, extra="  round_timeout: 120\n" + tls)
        (root / "forgeline.yaml").write_text(
            (root / "forgeline.yaml").read_text().replace("rounds: 12", "rounds: 2")
        )
    with _federation(deployed, ["north", "south", "east"]) as (coordinator, _):
        output, _ = coordinator.communicate(timeout=600)
    assert coordinator.returncode == 0, output
    assert "3 silos agree on 4 feature columns" in output and "round 2/2" in output
    assert "Federation done: loans v1" in output and "Traceback" not in output
    assert "unencrypted" not in output
    run_cli("federated", "simulate", cwd=simulated)
    here = _coefficients(deployed / "models" / "loans" / "v1")
    there = _coefficients(simulated / "models" / "loans" / "v1")
    assert here == pytest.approx(there, abs=1e-9)  # only the order of the sums differs
    evaluated = run_cli("evaluate", cwd=deployed)
    assert "ROC-AUC" in evaluated.stdout


def test_a_silo_killed_mid_run_does_not_stop_the_federation(tmp_path: Path) -> None:
    federation_project(tmp_path, rows=300, extra="  round_timeout: 15\n  min_silos: 2\n")
    config = tmp_path / "forgeline.yaml"
    config.write_text(config.read_text().replace("rounds: 12", "rounds: 3"))
    with _federation(tmp_path, ["north", "south", "east"]) as (coordinator, clients):
        assert coordinator.stdout is not None
        seen = []
        for line in coordinator.stdout:
            seen.append(line)
            if line.startswith("round 1/3"):
                _stop(clients["east"])
                break
        rest, _ = coordinator.communicate(timeout=600)
    output = "".join(seen) + rest
    assert coordinator.returncode == 0, output
    assert "round 3/3" in output and "Federation done: loans v1" in output
    metrics = json.loads(
        (tmp_path / "models" / "loans" / "v1" / "federation" / "metrics.json").read_text()
    )
    assert metrics["rounds"][0]["silos"] == 3
    assert metrics["rounds"][-1]["silos"] == 2
