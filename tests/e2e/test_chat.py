"""The chat task as a user runs it: `forgeline init --template chat`, train, evaluate, generate
and chat from the CLI, then `forgeline serve` on a real port, called with the official
`openai` client, metered by the token."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import jsonschema
import pytest
from openai import BadRequestError, OpenAI
from openai.types.chat import ChatCompletionMessageParam

from tests.e2e.conftest import create_key, run_cli, running_server

pytestmark = pytest.mark.e2e

# Small and quick: greedy by default, two threads, a context that fits the tests' prompts.
SETTINGS = """\
generation:
  max_tokens: 48
  temperature: 0
engine:
  context_tokens: 1024
  parallel: 4
  threads: 2
  max_queue: 16
  request_timeout_seconds: 60
"""
TEST_PLANS = """\
    open: {input_token_price: "1.00", output_token_price: "2.00", requests_per_second: 1000}
    tight: {included_units: 600, hard_cap: true, requests_per_second: 1000}
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("chat")
    run_cli("init", "assistant", "--template", "chat", cwd=root)
    project = root / "assistant"
    config = project / "forgeline.yaml"
    text = config.read_text()
    start, end = text.index("generation:"), text.index("data:")
    text = text[:start] + SETTINGS + "\n" + text[end:]
    # The base model as it is (fine-tuning has tests of its own: test_chat_finetune.py).
    text = text[: text.index("training:")] + text[text.index("serve:") :]
    text = text.replace("  train: data/train.jsonl", "")
    config.write_text(text.replace("  plans:\n", "  plans:\n" + TEST_PLANS))
    result = run_cli("train", cwd=project)
    assert "Registered assistant v1" in result.stdout
    return project


@pytest.fixture(scope="module")
def server(project: Path) -> Iterator[str]:
    with running_server(project) as base:
        yield base


@pytest.fixture(scope="module")
def client(project: Path, server: str) -> OpenAI:
    key = create_key(project, "--tenant", "acme", "--plan", "open")
    return OpenAI(base_url=f"{server}/v1", api_key=key, max_retries=0)


def _records(project: Path) -> dict[str, tuple[int, int, int]]:
    with sqlite3.connect(project / "forgeline.db") as db:
        rows = db.execute(
            "SELECT request_id, units, input_tokens, output_tokens FROM usage_records"
        )
        return {row[0]: (row[1], row[2], row[3]) for row in rows}


def test_train_registers_the_base_model_by_reference(project: Path) -> None:
    version = project / "models/assistant/v1"
    settings = json.loads((version / "chat.json").read_text())
    assert settings["gguf"]["base_model"] == "smollm2-135m"
    assert len(settings["gguf"]["sha256"]) == 64
    assert "Northwind Bank" in settings["system_prompt"]
    assert not list(version.glob("*.gguf"))


def test_evaluate_measures_perplexity_and_shows_replies(project: Path) -> None:
    result = run_cli("evaluate", cwd=project)
    assert "perplexity" in result.stdout
    metrics = json.loads((project / "models/assistant/v1/evaluation/metrics.json").read_text())
    assert 1 < metrics["perplexity"] < 100 and metrics["conversations"] == 12
    report = (project / "models/assistant/v1/evaluation/report.html").read_text()
    assert "Sample replies" in report and "My card was declined" in report


def test_generate_answers_prompts_from_arguments_and_files(project: Path) -> None:
    one = run_cli("generate", "Say hello to a customer.", cwd=project)
    assert one.stdout.strip()
    prompts = project / "prompts.txt"
    prompts.write_text("How do I reset my PIN?\nWhat are your opening hours?\n")
    out = project / "replies.jsonl"
    run_cli("generate", "--file", str(prompts), "--output", str(out), "--seed", "3", cwd=project)
    replies = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["prompt"] for r in replies] == prompts.read_text().splitlines()
    assert all(r["reply"] and r["completion_tokens"] > 0 for r in replies)
    bad = run_cli("generate", "--file", str(project / "missing.txt"), cwd=project, check=False)
    assert bad.returncode == 2 and "no such file" in bad.stderr


def test_chat_keeps_the_conversation_and_its_commands(project: Path) -> None:
    session = "What is the capital of France?\n/reset\n/system Answer in one word.\nHi\n/bogus\n"
    result = subprocess.run(
        [sys.executable, "-m", "forgeline", "chat"],
        cwd=project,
        input=session,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("assistant> ") == 2
    assert "(conversation forgotten)" in result.stderr
    assert "(system prompt set)" in result.stderr
    assert "unknown command" in result.stderr


def test_plain_and_streamed_chat_with_usage(client: OpenAI, project: Path) -> None:
    question: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "My card was declined. What can I do?"}
    ]
    reply = client.chat.completions.create(model="assistant", messages=question)
    assert reply.object == "chat.completion" and reply.choices[0].message.content
    assert reply.choices[0].finish_reason in ("stop", "length")
    usage = reply.usage
    assert usage is not None and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    record = _records(project)[reply.id.removeprefix("chatcmpl-")]
    assert record == (usage.total_tokens, usage.prompt_tokens, usage.completion_tokens)

    chunks = list(
        client.chat.completions.create(
            model="assistant",
            messages=question,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == reply.choices[0].message.content  # greedy: the same reply
    final = chunks[-1]
    assert final.choices == [] and final.usage is not None
    assert final.usage.completion_tokens == usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])
    streamed = _records(project)[final.id.removeprefix("chatcmpl-")]
    assert streamed == (final.usage.total_tokens, usage.prompt_tokens, usage.completion_tokens)


def test_json_schema_output_parses_and_validates(client: OpenAI) -> None:
    schema: dict[str, object] = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    reply = client.chat.completions.create(
        model="assistant",
        messages=[{"role": "user", "content": "Describe a customer as JSON."}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "c", "schema": dict(schema)},
        },
        max_tokens=80,
    )
    jsonschema.validate(json.loads(reply.choices[0].message.content or ""), schema)


def test_stop_strings_never_leak_and_n_gives_several_choices(client: OpenAI) -> None:
    reply = client.chat.completions.create(
        model="assistant",
        messages=[{"role": "user", "content": "Count from 1 to 20, one number per line."}],
        stop=["7", "\n\n"],
        n=3,
        seed=5,
        temperature=0.8,
        max_tokens=60,
    )
    assert [c.index for c in reply.choices] == [0, 1, 2]
    for choice in reply.choices:
        assert "7" not in (choice.message.content or "")


def test_unsupported_parameters_and_long_prompts_are_400(client: OpenAI) -> None:
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {}}}
    with pytest.raises(BadRequestError) as refused:
        client.chat.completions.create(
            model="assistant",
            messages=[{"role": "user", "content": "hi"}],
            tools=[tool],  # type: ignore[list-item]
        )
    assert refused.value.body["param"] == "tools"  # type: ignore[index]
    with pytest.raises(BadRequestError) as too_long:
        client.chat.completions.create(
            model="assistant", messages=[{"role": "user", "content": "word " * 1200}]
        )
    error = too_long.value.body
    assert error["code"] == "context_length_exceeded"  # type: ignore[index]
    assert "do not fit the context of 1024 tokens" in error["message"]  # type: ignore[index]


def test_a_client_that_disconnects_stops_generation_and_pays_for_what_was_made(
    project: Path, server: str, client: OpenAI
) -> None:
    headers = {"Authorization": f"Bearer {client.api_key}"}
    body = {
        "model": "assistant",
        "messages": [{"role": "user", "content": "Write a long story about a bank."}],
        "max_tokens": 400,
        "stream": True,
    }
    received = 0
    with httpx.stream("POST", f"{server}/v1/chat/completions", json=body, headers=headers) as r:
        request_id = r.headers["x-request-id"]
        for line in r.iter_lines():
            if line.startswith("data: ") and '"content"' in line:
                received += 1
            if received >= 6:
                break  # and the connection closes
    deadline = time.monotonic() + 20
    while request_id not in _records(project):
        assert time.monotonic() < deadline, "the disconnected call was never billed"
        time.sleep(0.2)
    _, _, output = _records(project)[request_id]
    assert received - 1 <= output < 60  # stopped within a few tokens, far from 400


def test_a_hard_cap_holds_under_concurrent_streams(project: Path, server: str) -> None:
    key = create_key(project, "--tenant", "small", "--plan", "tight")
    client = OpenAI(base_url=f"{server}/v1", api_key=key, max_retries=0)

    def stream(_: int) -> int:
        try:
            for _chunk in client.chat.completions.create(
                model="assistant",
                messages=[{"role": "user", "content": "Tell me about savings accounts."}],
                max_tokens=100,
                stream=True,
            ):
                pass
            return 200
        except Exception as exc:
            return int(getattr(exc, "status_code", 0))

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(stream, range(8)))
    assert 200 in statuses and 402 in statuses and set(statuses) <= {200, 402}
    with sqlite3.connect(project / "forgeline.db") as db:
        tenant = db.execute("SELECT id FROM tenants WHERE name = 'small'").fetchone()[0]
        billed = db.execute(
            "SELECT SUM(units) FROM usage_records WHERE tenant_id = ?", (tenant,)
        ).fetchone()[0]
        counted = db.execute(
            "SELECT units FROM usage_counters WHERE tenant_id = ?", (tenant,)
        ).fetchone()[0]
        held = db.execute("SELECT COUNT(*) FROM usage_reservations").fetchone()[0]
    assert billed <= 600 and counted == billed and held == 0


def test_invoice_token_counts_equal_the_ledger(project: Path, client: OpenAI) -> None:
    month = time.strftime("%Y-%m", time.gmtime())
    result = run_cli(
        "billing", "invoice", "--month", month, "--tenant", "acme", "--format", "json", cwd=project
    )
    [invoice] = json.loads(result.stdout)
    with sqlite3.connect(project / "forgeline.db") as db:
        read, written = db.execute(
            "SELECT SUM(input_tokens), SUM(output_tokens) FROM usage_records r "
            "JOIN tenants t ON t.id = r.tenant_id WHERE t.name = 'acme'"
        ).fetchone()
    lines = {line["kind"]: line for line in invoice["lines"]}
    assert (invoice["input_tokens"], invoice["output_tokens"]) == (read, written)
    assert lines["input tokens"]["quantity"] == read
    assert lines["output tokens"]["quantity"] == written
    assert lines["output tokens"]["amount"] == (2 * written * 200 + 1_000_000) // 2_000_000


def test_models_are_listed_in_openais_shape(client: OpenAI) -> None:
    [model] = list(client.models.list())
    assert model.id == "assistant" and model.owned_by == "forgeline"
