"""Run Forgeline as a user does: the CLI in a subprocess, the server on a real port."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest


def run_cli(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    result = subprocess.run(
        [sys.executable, "-m", "forgeline", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"forgeline {' '.join(args)} exited {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def create_key(project: Path, *args: str) -> str:
    """A new API key from `forgeline keys create`, which prints just the key on stdout."""
    return run_cli("keys", "create", *args, cwd=project).stdout.strip()


@contextmanager
def api_client(project: Path) -> Iterator[httpx.Client]:
    """An HTTP client that sends a fresh key of a tenant on the example's `pro` plan."""
    key = create_key(project, "--tenant", "e2e", "--plan", "pro")
    with httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
        yield client


@contextmanager
def running_server(
    project: Path, timeout: float = 120, env: dict[str, str] | None = None
) -> Iterator[str]:
    """Start `forgeline serve` on a free port and yield its base URL once it is ready. Its
    output goes to a file: a pipe nobody reads fills up (64 KB of access log) and then blocks
    the server."""
    port = free_port()
    log = project / f"serve-{port}.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "forgeline", "serve", "--port", str(port)],
            cwd=project,
            env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise AssertionError(f"server exited early:\n{log.read_text()}")
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"server did not become ready in time:\n{log.read_text()}")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


@contextmanager
def report_in_browser(report: Path) -> Iterator[tuple[Any, list[str]]]:
    """``report`` opened in headless Chromium (the test skips without Playwright or Chromium,
    which .ci/run installs): the page, and every URL it asked for that is not the file itself
    or inline data (a self-contained report asks for none)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Chromium is not installed (.ci/run installs it)")
    outside: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page()
            page.on(
                "request",
                lambda request: (
                    None
                    if request.url.startswith(("file:", "data:"))
                    else outside.append(request.url)
                ),
            )
            page.goto(report.as_uri())
            yield page, outside
        finally:
            browser.close()
