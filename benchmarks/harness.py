"""What the server benchmarks share: a trained example project and `forgeline serve` processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the one helper for throwaway databases lives with the tests
from tests.databases import disposable_database  # noqa: E402

__all__ = ["disposable_database"]

# An applicant of the bundled credit example, as the benchmarks send it.
APPLICANT = {
    "limit_bal": 20000,
    "age": 24,
    "income": 1800,
    "employment_years": 0.5,
    "home_ownership": "rent",
    "purpose": "other",
    "utilization": 0.95,
    "late_payments_12m": 3,
    "previous_default": "no",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def forgeline(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run the CLI as a user would; its stdout."""
    result = subprocess.run(
        [sys.executable, "-m", "forgeline", *args],
        cwd=cwd,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"forgeline {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


def trained_example(
    work: Path, template: str = "tabular-classification", *, fine_tune: bool = True
) -> Path:
    """A project made by `forgeline init` from a bundled template, trained. Without
    ``fine_tune`` the template's ``training:`` section is dropped first: a chat project then
    registers its base model as it is (minutes less, for checks that only need a served model)."""
    forgeline("init", "bench", "--template", template, cwd=work)
    project = work / "bench"
    if not fine_tune:
        config = project / "forgeline.yaml"
        kept, skipping = [], False
        for line in config.read_text().splitlines(keepends=True):
            if line.startswith("training:"):
                skipping = True
            elif skipping and line.strip() and not line.startswith((" ", "#")):
                skipping = False
            if not skipping:
                kept.append(line)
        config.write_text("".join(kept))
    forgeline("train", cwd=project)
    return project


def start_server(
    project: Path, port: int, env: dict[str, str], *args: str
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "forgeline", "serve", "--port", str(port), *args],
        cwd=project,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def wait_ready(base: str, process: subprocess.Popen[str], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit("server did not become ready")
