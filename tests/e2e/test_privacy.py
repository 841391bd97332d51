"""Personal data through a running server, as customers send it: ``POST /v1/redact``, a chat
model whose prompts are redacted (``privacy.redact_inputs``), predictions of an entity tagger
(whose replies quote their input), refused requests and idempotent retries; then every log
line, database byte and file the server wrote is searched for it.

The chat model is the template's base model as it is, the tagger MiniLM with an untrained
head: nothing is trained, since what is tested is where the data goes, not how good the
answers are. The chat reply is forced by a JSON schema whose one value is a placeholder: the
model must write ``<EMAIL_ADDRESS_1>`` token by token, so the reply shows the placeholder
restored, streamed or not.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI
from openai.types.chat import ChatCompletionMessageParam
from openai.types.shared_params import ResponseFormatJSONSchema

from forgeline.registry import ModelRegistry
from forgeline.tasks.token_classification import TokenClassifier
from tests.e2e.conftest import create_key, run_cli, running_server

pytestmark = pytest.mark.e2e

EMAIL = "maria.fernanda.lopez.garcia@universidad-ejemplo.org"
SHORT_EMAIL = "li@qq.cn"
PHONE = "+44 20 7946 0958"
CARD = "4111 1111 1111 1111"
IBAN = "DE89 3704 0044 0532 0130 00"
PERSONAL = (EMAIL, SHORT_EMAIL, PHONE, CARD, IBAN, "4111111111111111", "7946 0958")
"""What must not be found anywhere the server wrote (the card also without its spaces)."""
PRIVACY_KEY = "k" * 40

SETTINGS = """\
generation:
  max_tokens: 48
  temperature: 0
engine:
  context_tokens: 1024
  parallel: 2
  threads: 2
privacy:
  redact_inputs: true
"""
PLACEHOLDER_REPLY: ResponseFormatJSONSchema = {
    "type": "json_schema",
    "json_schema": {
        "name": "contact",
        "schema": {
            "type": "object",
            "properties": {"email": {"const": "<EMAIL_ADDRESS_1>"}},
            "required": ["email"],
        },
    },
}


@dataclass
class Traffic:
    """What the clients got back while the server ran, and when it started."""

    project: Path
    log: Path
    started: float
    answers: dict[str, Any] = field(default_factory=dict)


def _project(root: Path, tagger: TokenClassifier) -> Path:
    run_cli("init", "assistant", "--template", "chat", cwd=root)
    project = root / "assistant"
    config = project / "forgeline.yaml"
    text = config.read_text()
    text = text[: text.index("generation:")] + SETTINGS + "\n" + text[text.index("data:") :]
    text = text[: text.index("training:")] + text[text.index("serve:") :]
    text = text.replace("  train: data/train.jsonl\n", "")
    text = text.replace("serve:\n  port: 8000\n", "serve:\n  port: 8000\n  redact: true\n")
    config.write_text(text)
    run_cli("train", cwd=project)
    ModelRegistry(project / "models").publish(
        "tagger",
        tagger,
        config={},
        data_fingerprint={"sha256": "0" * 64, "files": {}},
        base_model="minilm-l6",
    )
    return project


def _send_personal_data(base: str, project: Path) -> dict[str, Any]:
    key = create_key(project, "--tenant", "acme", "--plan", "pro")
    chat_only = create_key(project, "--tenant", "acme", "--plan", "pro", "--actions", "generate")
    auth = {"Authorization": f"Bearer {key}"}
    answers: dict[str, Any] = {}
    with httpx.Client(base_url=base, headers=auth, timeout=60) as http:
        texts = [f"Mail {EMAIL} or call {PHONE}", f"Card {CARD}, IBAN {IBAN}"]
        answers["mask"] = http.post("/v1/redact", json={"inputs": texts, "operator": "mask"})
        retry = {"Idempotency-Key": "redact-1"}
        body = {"inputs": texts, "operator": "pseudonymize"}
        answers["pseudonyms"] = [
            http.post("/v1/redact", json=body, headers=retry) for _ in range(2)
        ]
        answers["no_scope"] = http.post(
            "/v1/redact",
            json={"inputs": texts},
            headers={"Authorization": f"Bearer {chat_only}"},
        )
        answers["too_long"] = http.post("/v1/redact", json={"inputs": [EMAIL * 100]})
        answers["bad_field"] = http.post("/v1/redact", json={"inputs": texts, "lang": EMAIL})
        answers["query"] = http.get(f"/v1/models?email={EMAIL}")
        predict = {"inputs": [f"Ship it to {EMAIL}, phone {PHONE}"]}
        answers["predictions"] = [
            http.post("/v1/models/tagger/predict", json=predict, headers={"Idempotency-Key": "p-1"})
            for _ in range(2)
        ]
        answers["predict_too_long"] = http.post(
            "/v1/models/tagger/predict", json={"inputs": [CARD * 200]}
        )
    client = OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)
    question: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": f"Write to me at {EMAIL} please."}
    ]
    answers["chat"] = client.chat.completions.create(
        model="assistant",
        messages=question,
        response_format=PLACEHOLDER_REPLY,
    )
    stream = client.chat.completions.create(
        model="assistant",
        messages=question,
        response_format=PLACEHOLDER_REPLY,
        stream=True,
    )
    answers["stream"] = [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]
    short: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": f"Write to me at {SHORT_EMAIL} please."}
    ]
    answers["short"] = client.chat.completions.create(model="assistant", messages=short)
    replayed = client.with_options(default_headers={"Idempotency-Key": "chat-1"})
    answers["replays"] = [
        replayed.chat.completions.with_raw_response.create(
            model="assistant",
            messages=question,
            response_format=PLACEHOLDER_REPLY,
        )
        for _ in range(2)
    ]
    with httpx.Client(base_url=base, headers=auth, timeout=60) as http:
        answers["tools"] = http.post(
            "/v1/chat/completions",
            json={"model": "assistant", "messages": question, "tools": [{"email": EMAIL}]},
        )
    return answers


@pytest.fixture(scope="module")
def traffic(
    tmp_path_factory: pytest.TempPathFactory, untrained_tagger: TokenClassifier
) -> Iterator[Traffic]:
    project = _project(tmp_path_factory.mktemp("privacy"), untrained_tagger)
    started = time.time()
    with running_server(project, env={"FORGELINE_PRIVACY_KEY": PRIVACY_KEY}) as base:
        answers = _send_personal_data(base, project)
    [log] = project.glob("serve-*.log")
    yield Traffic(project, log, started, answers)


def test_redact_masks_pseudonymizes_and_bills_a_unit_per_text(traffic: Traffic) -> None:
    masked = traffic.answers["mask"]
    assert masked.status_code == 200, masked.text
    first, second = masked.json()["redactions"]
    assert EMAIL not in first["text"] and PHONE not in first["text"]
    assert first["text"].startswith("Mail ") and "**** **** **** 1111" in second["text"]
    assert {e["type"] for e in first["entities"]} == {"EMAIL_ADDRESS", "PHONE_NUMBER"}
    start = first["entities"][0]["start"]
    assert f"Mail {EMAIL}"[start:].startswith(EMAIL)  # offsets into the text as sent
    original, retried = traffic.answers["pseudonyms"]
    assert original.status_code == retried.status_code == 200
    assert retried.headers["Idempotent-Replayed"] == "true"
    assert retried.json() == original.json()
    assert "<EMAIL_ADDRESS_" in original.json()["redactions"][0]["text"]
    with sqlite3.connect(traffic.project / "forgeline.db") as db:
        rows = db.execute(
            "SELECT model, action, units FROM usage_records WHERE action = 'redact'"
        ).fetchall()
    assert rows == [("", "redact", 2), ("", "redact", 2)]  # the replay is not billed again


def test_redact_refuses_keys_without_the_action_and_bad_input(traffic: Traffic) -> None:
    answers = traffic.answers
    assert answers["no_scope"].status_code == 403
    assert "may not redact" in answers["no_scope"].json()["error"]["message"]
    assert answers["too_long"].status_code == 422
    assert answers["bad_field"].status_code == 422
    for name in ("no_scope", "too_long", "bad_field"):
        assert EMAIL not in answers[name].text  # errors do not echo what was sent


def test_chat_model_sees_placeholders_and_replies_with_the_values(traffic: Traffic) -> None:
    reply = traffic.answers["chat"]
    assert json.loads(reply.choices[0].message.content) == {"email": EMAIL}
    streamed = traffic.answers["stream"]
    assert json.loads("".join(streamed)) == {"email": EMAIL}
    assert not any("<EMAIL" in chunk or "ADDRESS_1>" in chunk for chunk in streamed)
    # Both addresses reach the model as the same placeholder: the same prompt, token for token,
    # though one address is six times as long as the other.
    assert traffic.answers["short"].usage.prompt_tokens == reply.usage.prompt_tokens


def test_predictions_are_answered_and_replayed(traffic: Traffic) -> None:
    first, second = traffic.answers["predictions"]
    assert first.status_code == 200 and second.headers["Idempotent-Replayed"] == "true"
    assert first.json() == second.json()
    too_long = traffic.answers["predict_too_long"]
    assert too_long.status_code == 422 and CARD not in too_long.text


def test_a_retried_chat_request_replays_the_restored_reply(traffic: Traffic) -> None:
    first, second = traffic.answers["replays"]
    assert second.headers["Idempotent-Replayed"] == "true"
    assert json.loads(second.parse().choices[0].message.content) == {"email": EMAIL}
    assert first.parse().choices[0].message.content == second.parse().choices[0].message.content
    assert traffic.answers["tools"].status_code == 400


def test_nothing_personal_is_written_anywhere(traffic: Traffic) -> None:
    """Every line the server logged and every file in the project the server wrote while it
    ran (the SQLite database and its write-ahead log, byte for byte: free pages included) are
    searched for each personal value sent, and the log for the Idempotency-Keys. The stored
    replies that hold personal data are encrypted."""
    written = [
        path
        for path in traffic.project.rglob("*")
        if path.is_file() and path.stat().st_mtime >= traffic.started
    ]
    assert traffic.log in written and any(p.name.startswith("forgeline.db") for p in written)
    log = traffic.log.read_text()
    assert "POST /v1/redact" in log and "GET /v1/models HTTP" in log  # the access log ran
    assert all(key not in log for key in ("redact-1", "chat-1", "p-1"))
    for path in written:
        content = path.read_bytes()
        for value in PERSONAL:
            assert value.encode() not in content, f"{value!r} found in {path.name}"
    with sqlite3.connect(traffic.project / "forgeline.db") as db:
        bodies = [row[0] for row in db.execute("SELECT body FROM idempotent_responses")]
    assert len(bodies) == 3 and all(body.startswith("fl1:") for body in bodies)
