"""A property-based fuzzing pass over the whole HTTP API with Schemathesis.

A real `forgeline serve` on a free port serves a tabular model (trained from the template), a
text model and a token model (MiniLM with untrained heads: real weights, no training needed), a
chat model (SmolLM2, with a short time limit per request) and /v1/redact, with auth and
metering on. Schemathesis reads the typed OpenAPI document a key sees (/v1/openapi.json), then
calls every operation with generated valid and invalid requests and checks every answer: no
5xx, and every status, header, content type and body as documented.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from forgeline.config.load import load_project
from forgeline.registry import ModelRegistry
from forgeline.tasks.chat import ChatModel
from forgeline.tasks.text_classification import TextClassifier
from forgeline.tasks.token_classification import TokenClassifier
from tests.conftest import write_project
from tests.e2e.conftest import create_key, run_cli, running_server

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
ADMIN_KEY = "fuzz-admin-key-0123456789abcdefghijklmnop"
CHAT_CONFIG = """\
name: assistant
task: chat
generation: {max_tokens: 8, temperature: 0}
engine: {context_tokens: 256, parallel: 4, threads: 2, request_timeout_seconds: 2}
"""
# Every check, but two stateful ones that need links between operations, which this API does
# not declare. On the generation routes, context length (prompt plus max_tokens) and which JSON
# Schemas llama.cpp can enforce depend on the request as a whole: no schema says them, so
# valid-looking requests may rightly get 400. Every other check still runs there, on fewer
# examples (each one generates).
CHECKS = """
[checks]
enabled = true
use_after_free.enabled = false
ensure_resource_availability.enabled = false

[[operations]]
include-path-regex = "^/v1/(chat/)?completions$"
checks.positive_data_acceptance.enabled = false
generation.max-examples = 10
"""
FUZZ_PLAN = """\
    fuzz:
      monthly_fee: 10
      included_units: 1000000
      requests_per_second: 1000
"""


@pytest.fixture(scope="module")
def project(
    tmp_path_factory: pytest.TempPathFactory,
    untrained_classifier: TextClassifier,
    untrained_tagger: TokenClassifier,
) -> Path:
    root = tmp_path_factory.mktemp("fuzz")
    run_cli("init", "credit", "--template", "tabular-classification", cwd=root)
    project = root / "credit"
    config = project / "forgeline.yaml"
    text = config.read_text().replace("  plans:\n", "  plans:\n" + FUZZ_PLAN)
    # The fuzzer sends many requests without a key on purpose; one address, so let them in.
    text = text.replace(
        "serve:\n",
        "serve:\n  redact: true\n  failed_auth: {requests_per_second: 1000, burst: 1000}\n",
    )
    config.write_text(text)
    run_cli("train", cwd=project)
    registry = ModelRegistry(project / "models")
    registry.publish(
        "intents",
        untrained_classifier,
        config={"name": "intents", "task": "text-classification"},
        data_fingerprint={"sha256": "0" * 64, "files": {}},
        base_model="minilm-l6",
    )
    registry.publish(
        "entities",
        untrained_tagger,
        config={"name": "entities", "task": "token-classification"},
        data_fingerprint={"sha256": "0" * 64, "files": {}},
        base_model="minilm-l6",
    )
    (root / "chat").mkdir()
    chat_project = load_project(write_project(root / "chat", CHAT_CONFIG))
    chat = ChatModel.fit(chat_project, ChatModel.prepare_data(chat_project), lambda _: None)
    registry.publish(
        "assistant",
        chat,
        config=chat_project.config.model_dump(mode="json"),
        data_fingerprint={"sha256": "", "files": {}},
        base_model="smollm2-135m",
    )
    return project


def _schemathesis(
    base: str, key: str, workdir: Path, *selection: str
) -> subprocess.CompletedProcess[str]:
    """Run the fuzzer on the typed document ``key`` sees. The key goes in through the
    document's security scheme, so Schemathesis also checks calls without it are refused."""
    document = workdir / "openapi.json"
    fetched = httpx.get(f"{base}/v1/openapi.json", headers={"Authorization": f"Bearer {key}"})
    document.write_text(fetched.raise_for_status().text)
    settings = workdir / "schemathesis.toml"
    settings.write_text(f'[auth.openapi.apiKey]\nbearer = "{key}"\n' + CHECKS)
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(settings),
        "run",
        str(document),
        "--url",
        base,
        "--max-examples",
        "25",
        "--workers",
        "1",
        "--seed",
        "1",
        "--request-timeout",
        "30",
        "--suppress-health-check",
        "all",
        *selection,
    ]
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.e2e.fuzz_hooks",
        "PYTHONPATH": str(REPO),
        "NO_COLOR": "1",
    }
    return subprocess.run(command, capture_output=True, text=True, timeout=1200, env=env, cwd=REPO)


def test_every_operation_answers_as_documented(project: Path, tmp_path: Path) -> None:
    tenant_key = create_key(project, "--tenant", "fuzzer", "--plan", "fuzz")
    (tmp_path / "tenant").mkdir()
    (tmp_path / "admin").mkdir()
    keys = {"FORGELINE_ADMIN_KEY": ADMIN_KEY, "FORGELINE_PRIVACY_KEY": "p" * 40}
    with running_server(project, env=keys) as base:
        tenant = _schemathesis(
            base, tenant_key, tmp_path / "tenant", "--exclude-path-regex", "^/(admin/|metrics)"
        )
        # Admin keys have a fixed rate limit (20 a second); keep under it, or /metrics goes
        # untested behind 429s.
        admin = _schemathesis(
            base,
            ADMIN_KEY,
            tmp_path / "admin",
            "--include-path-regex",
            "^/(admin/|metrics)",
            "--rate-limit",
            "18/s",
        )
    for run in (tenant, admin):
        assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
        assert "Rate limited" not in run.stdout, run.stdout[-3000:]
    assert "Tested: 11" in tenant.stdout and "Tested: 8" in admin.stdout
