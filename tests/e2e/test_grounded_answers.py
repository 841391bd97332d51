"""A knowledge base answering through a chat model, as a user sets it up: two projects sharing
one registry (`registry: ../models`), `answer.generate: assistant` in the knowledge base's
config, `forgeline serve`, and the official `openai` client asking the knowledge base's model
name. Answers cite entries by number, the numbers map to real entry ids (also on a stream's
first chunk), an unanswerable question gets the fallback without generating, and each answer
is billed one search unit plus its tokens."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from openai import APIStatusError, BadRequestError, OpenAI
from openai.types.chat import ChatCompletionMessageParam

from tests.e2e.conftest import create_key, run_cli, running_server

pytestmark = pytest.mark.e2e

ENTRIES = """\
id,question,answer
password-reset,How do I reset my password?,"Open Settings, choose Security, then Reset password: we email you a link that works for one hour."
opening-hours,When is the support desk open?,"The support desk is open Monday to Friday, 8:00 to 18:00 CET."
refund,How do I get a refund?,"Refunds go back to the card you paid with, within 5 working days of the returned item arriving."
shipping-cost,How much does shipping cost?,"Shipping is free for orders over 50 EUR; below that it costs 4.90 EUR."
delete-account,How do I delete my account?,"Write to privacy@example.com from the account's address: we delete it within 30 days."
change-address,How do I change my delivery address?,"Under Orders, choose Edit address; this works until the order has shipped."
"""
QUESTIONS = """\
question,entry
I forgot my password,password-reset
can't log in need a new password,password-reset
reset password link,password-reset
what are your opening hours,opening-hours
is support open on saturday,opening-hours
when can I call you,opening-hours
I want my money back,refund
how long does a refund take,refund
refund for a returned order,refund
do you charge for delivery,shipping-cost
is shipping free,shipping-cost
delivery fee,shipping-cost
close my account,delete-account
remove all my data,delete-account
I want to delete my profile,delete-account
ship to a different address,change-address
update my delivery address,change-address
wrong address on my order,change-address
who won the football match yesterday,none
what is the capital of Mongolia,none
"""
FALLBACK = "I could not find this in our help pages; a colleague will get back to you."
KNOWLEDGE_CONFIG = f"""\
name: helpdesk
task: knowledge-qa
registry: ../models
data:
  entries: data/entries.csv
  train: data/questions.csv
  split: {{validation: 0.3, test: 0.3, seed: 1}}
encoder: {{fine_tune: false}}
answer:
  fallback: "{FALLBACK}"
  threshold: 0.45
  generate: assistant
  context_entries: 2
billing:
  plans:
    pro: {{included_units: 100000, requests_per_second: 1000}}
    tight: {{included_units: 3, hard_cap: true, requests_per_second: 1000}}
"""
CHAT_SETTINGS = """\
registry: ../models
generation: {max_tokens: 48, temperature: 0}
engine: {context_tokens: 1024, parallel: 2, threads: 2, max_queue: 16}
"""


@pytest.fixture(scope="module")
def helpdesk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("grounded")
    (root / "assistant").mkdir()
    (root / "assistant/forgeline.yaml").write_text(
        "name: assistant\ntask: chat\nbase_model: smollm2-135m\n" + CHAT_SETTINGS
    )
    assert "Registered assistant v1" in run_cli("train", cwd=root / "assistant").stdout
    project = root / "helpdesk"
    (project / "data").mkdir(parents=True)
    (project / "data/entries.csv").write_text(ENTRIES)
    (project / "data/questions.csv").write_text(QUESTIONS)
    (project / "forgeline.yaml").write_text(KNOWLEDGE_CONFIG)
    assert "Registered helpdesk v1" in run_cli("train", cwd=project).stdout
    return project


@pytest.fixture(scope="module")
def client(helpdesk: Path) -> Iterator[OpenAI]:
    key = create_key(helpdesk, "--tenant", "acme", "--plan", "pro")
    with running_server(helpdesk) as base:
        yield OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)


def test_a_generated_answer_cites_the_entries_it_was_given(client: OpenAI) -> None:
    completion = client.chat.completions.create(
        model="helpdesk", messages=[{"role": "user", "content": "How can I reset my password?"}]
    )
    citations = completion.model_extra["citations"] if completion.model_extra else None
    assert citations is not None and citations["1"] == "password-reset"
    assert set(citations.values()) <= {line.split(",")[0] for line in ENTRIES.splitlines()[1:]}
    assert len(citations) <= 2  # context_entries
    assert completion.choices[0].message.content
    assert completion.usage is not None and completion.usage.prompt_tokens > 30  # entries inside


def test_a_stream_sends_the_citations_first(client: OpenAI) -> None:
    stream = client.chat.completions.create(
        model="helpdesk",
        messages=[{"role": "user", "content": "is delivery free?"}],
        stream=True,
    )
    chunks = list(stream)
    first = chunks[0].model_extra or {}
    assert first["citations"]["1"] == "shipping-cost"
    assert all("citations" not in (chunk.model_extra or {}) for chunk in chunks[1:])
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_an_unanswerable_question_gets_the_fallback_not_an_invention(client: OpenAI) -> None:
    for stream in (False, True):
        if stream:
            chunks = list(
                client.chat.completions.create(
                    model="helpdesk",
                    messages=[{"role": "user", "content": "Which planet has the most moons?"}],
                    stream=True,
                )
            )
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        else:
            completion = client.chat.completions.create(
                model="helpdesk",
                messages=[{"role": "user", "content": "Which planet has the most moons?"}],
            )
            text = completion.choices[0].message.content or ""
            assert completion.usage is not None and completion.usage.total_tokens == 0
            assert (completion.model_extra or {}).get("citations") is None
        assert text == FALLBACK


def test_a_knowledge_base_does_not_continue_raw_prompts(client: OpenAI) -> None:
    with pytest.raises(BadRequestError, match="chat/completions"):
        client.completions.create(model="helpdesk", prompt="How do I reset my password?")
    # The chat model it answers through is served as itself too.
    reply = client.chat.completions.create(
        model="assistant", messages=[{"role": "user", "content": "Say hello."}]
    )
    assert reply.choices[0].message.content


def test_each_answer_is_billed_one_search_plus_its_tokens(helpdesk: Path, client: OpenAI) -> None:
    key = create_key(helpdesk, "--tenant", "billed", "--plan", "pro")
    billed = client.with_options(api_key=key)
    answered = billed.chat.completions.create(
        model="helpdesk", messages=[{"role": "user", "content": "when are you open?"}]
    )
    fallback = billed.chat.completions.create(
        model="helpdesk", messages=[{"role": "user", "content": "Which planet has the most moons?"}]
    )
    assert answered.usage is not None and answered.usage.total_tokens > 0
    assert fallback.usage is not None and fallback.usage.total_tokens == 0
    month = datetime.now(UTC).strftime("%Y-%m")
    out = run_cli("usage", "--tenant", "billed", "--month", month, "--json", cwd=helpdesk).stdout
    rows = [row for row in json.loads(out) if row["model"] == "helpdesk"]
    assert sum(row["calls"] for row in rows) == 2
    assert sum(row["units"] for row in rows) == answered.usage.total_tokens + 2


def test_a_hard_cap_holds_nothing_for_a_fallback(helpdesk: Path, client: OpenAI) -> None:
    capped = client.with_options(
        api_key=create_key(helpdesk, "--tenant", "capped", "--plan", "tight")
    )
    unanswerable: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "Which planet has the most moons?"}
    ]
    with pytest.raises(APIStatusError) as refused:  # a generated answer holds its max_tokens
        capped.chat.completions.create(
            model="helpdesk", messages=[{"role": "user", "content": "is shipping free?"}]
        )
    assert refused.value.status_code == 402
    for _ in range(3):  # a fallback costs its one search unit, and holds no more
        said = capped.chat.completions.create(model="helpdesk", messages=unanswerable)
        assert said.choices[0].message.content == FALLBACK
    with pytest.raises(APIStatusError) as refused:
        capped.chat.completions.create(model="helpdesk", messages=unanswerable)
    assert refused.value.status_code == 402


def test_evaluate_and_generate_from_the_command_line(helpdesk: Path) -> None:
    run_cli("evaluate", cwd=helpdesk)
    metrics = json.loads(
        (helpdesk.parent / "models/helpdesk/v1/evaluation/metrics.json").read_text()
    )
    assert metrics["generated_share"] > 0
    assert 0 <= metrics["citing_right_entry"] <= metrics["citing_any_entry"] <= 1
    report = (helpdesk.parent / "models/helpdesk/v1/evaluation/report.html").read_text()
    assert "Generated answers" in report
    result = run_cli("generate", "how do I get my money back", cwd=helpdesk)
    assert "[1] refund" in result.stdout


def test_a_chat_model_missing_from_the_registry_is_named(helpdesk: Path) -> None:
    config = helpdesk / "forgeline.yaml"
    original = config.read_text()
    try:
        config.write_text(original.replace("generate: assistant", "generate: writer"))
        result = run_cli("train", cwd=helpdesk, check=False)
        assert result.returncode != 0
        assert "'writer', which is not in the registry" in result.stderr
        assert "Traceback" not in result.stderr
    finally:
        config.write_text(original)
