"""A federation across machines on Flower's deployment engine.

``forgeline federated server`` starts a SuperLink (the coordinator), waits for the silos and
submits the federation as a Flower App whose ServerApp and ClientApp are
:mod:`forgeline.federated.coordinator_app` and :mod:`~forgeline.federated.silo_app`; the ServerApp registers the model in this project's registry.
``forgeline federated client`` starts a SuperNode for one silo; Flower runs the ClientApp
beside it, and that reads only the silo's own file. Both run Flower's own executables from this
environment; the messages between them are Flower's, over HTTP, TLS when ``federated.tls`` names
certificates.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from forgeline.config import Project
from forgeline.config.federated import TlsConfig
from forgeline.errors import ConfigError, ForgelineError
from forgeline.federated.silos import federation_config, read_silo
from forgeline.registry import ModelRegistry
from forgeline.registry.store import ModelVersion
from forgeline.tasks.base import Notify

FLOWER_APP = """\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "forgeline-federation"
version = "1.0.0"
description = "Forgeline federated training: the apps live in the installed forgeline package"
license = "Apache-2.0"
dependencies = []

[tool.flwr.app]
publisher = "forgeline"

[tool.flwr.app.components]
serverapp = "forgeline.federated.coordinator_app:server_app"
clientapp = "forgeline.federated.silo_app:client_app"

[tool.flwr.app.config]
project = ""
"""
"""The Flower App submitted to the SuperLink: it only names Forgeline's installed apps, so
nothing is installed at run time."""
CONNECTION = "forgeline"
_STARTUP_SECONDS = 60.0


def _flower(executable: str) -> str:
    """A Flower executable of this environment (beside the running Python)."""
    beside = Path(sys.executable).parent / executable
    found = str(beside) if beside.is_file() else shutil.which(executable)
    if found is None:
        raise ForgelineError(f"Flower's '{executable}' is not installed beside {sys.executable}")
    return found


def _flower_env(**extra: str) -> dict[str, str]:
    """The environment of Flower's processes: they start each other by name (the SuperLink
    starts ``flower-superexec``), so this environment's executables come first on PATH."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return {**os.environ, "PATH": path, **extra}


def _toml_string(text: str) -> str:
    return json.dumps(text)  # a JSON string is a TOML basic string


def _tls_files(project: Project, tls: TlsConfig) -> dict[str, Path]:
    files = {
        "certificate": project.resolve(tls.certificate),
        "private_key": project.resolve(tls.private_key),
        "ca_certificate": project.resolve(tls.ca_certificate),
    }
    for field, path in files.items():
        if not path.is_file():
            raise ConfigError(f"federated.tls.{field}: no such file '{path}'")
    return files


def _local(host: str) -> str:
    """The address this machine reaches a server listening on ``host`` at."""
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


def _wait_for_port(host: str, port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + _STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ForgelineError(f"the coordinator did not start:\n{log.read_text()[-2000:]}")
        with socket.socket() as probe:
            probe.settimeout(0.5)
            if probe.connect_ex((_local(host), port)) == 0:
                return
        time.sleep(0.2)
    raise ForgelineError(f"the coordinator did not listen on port {port} within a minute")


@contextmanager
def _stopping(process: subprocess.Popen[Any]) -> Iterator[subprocess.Popen[Any]]:
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def run_coordinator(project: Project, host: str, port: int, notify: Notify) -> ModelVersion:
    """Coordinate one federation of the project's silos; the version it registered."""
    _, federated = federation_config(project)
    tls = _tls_files(project, federated.tls) if federated.tls is not None else None
    if tls is None:
        notify("warning: no federated.tls: model updates travel unencrypted")
    registry = ModelRegistry(project.registry_dir)
    name = project.config.name
    before = registry.versions(name) if name in registry.names() else []
    with tempfile.TemporaryDirectory(prefix="forgeline-federation-") as scratch:
        work = Path(scratch)
        (work / "app").mkdir()
        (work / "app" / "pyproject.toml").write_text(FLOWER_APP, encoding="utf-8")
        security = (
            [
                "--ssl-certfile",
                str(tls["certificate"]),
                "--ssl-keyfile",
                str(tls["private_key"]),
                "--ssl-ca-certfile",
                str(tls["ca_certificate"]),
            ]
            if tls
            else ["--insecure"]
        )
        (work / "flwr").mkdir()
        (work / "flwr" / "config.toml").write_text(
            f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
            f"address = {_toml_string(f'{_local(host)}:{port}')}\n"
            + (
                f"root-certificates = {_toml_string(str(tls['ca_certificate']))}\n"
                if tls
                else "insecure = true\n"
            ),
            encoding="utf-8",
        )
        log = work / "superlink.log"
        with log.open("wb") as sink:
            link = subprocess.Popen(
                [
                    _flower("flower-superlink"),
                    *security,
                    "--disable-runtime-dependency-installation",
                    "--host",
                    host,
                    "--port",
                    str(port),
                ],
                stdout=sink,
                stderr=subprocess.STDOUT,
                cwd=work,
                env=_flower_env(),
            )
        with _stopping(link):
            _wait_for_port(host, port, link, log)
            notify(f"coordinator listening on {host}:{port}")
            project_file = _toml_string(str(project.config_file.resolve()))
            run = subprocess.Popen(
                [
                    _flower("flwr"),
                    "run",
                    str(work / "app"),
                    CONNECTION,
                    "--stream",
                    "--run-config",
                    f"project={project_file}",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=_flower_env(FLWR_HOME=str(work / "flwr")),
            )
            assert run.stdout is not None
            for line in run.stdout:
                if _worth_showing(line):
                    notify(line.rstrip())
            run.wait()
    after = registry.versions(name) if name in registry.names() else []
    new = [v for v in after if v not in before]
    if not new:
        raise ForgelineError("the federation ended without registering a model (see above)")
    return registry.resolve(name, new[-1])


def _worth_showing(line: str) -> bool:
    """Forgeline's own lines and Flower's errors; not Flower's per-message INFO log."""
    text = line.strip()
    return bool(text) and "INFO" not in text[:20] and not text.startswith("Using SuperLink")


def run_silo(project: Project, silo: str, server: str, notify: Notify) -> int:
    """Take part in federations as silo ``silo`` until stopped (Ctrl+C); the exit status."""
    _, federated = federation_config(project)
    read_silo(project, silo)  # a missing or malformed file is said now, not mid-round
    tls = _tls_files(project, federated.tls) if federated.tls is not None else None
    security = ["--root-certificates", str(tls["ca_certificate"])] if tls else ["--insecure"]
    node_config = (
        f"silo={_toml_string(silo)} project={_toml_string(str(project.config_file.resolve()))}"
    )
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        runtime_port = free.getsockname()[1]
    node = subprocess.Popen(
        [
            _flower("flower-supernode"),
            *security,
            "--superlink",
            server,
            "--node-config",
            node_config,
            "--port",
            str(runtime_port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_flower_env(),
    )
    notify(f"silo '{silo}' joining the federation at {server} (Ctrl+C to leave)")
    with _stopping(node):
        assert node.stdout is not None
        for line in node.stdout:
            if "ERROR" in line or "Traceback" in line:
                notify(line.rstrip())
        return node.wait()
