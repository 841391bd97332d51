"""Fine-tuning the chat model as a user does: `forgeline init --template chat`, train (LoRA,
exported to GGUF behind the parity gate), evaluate beside the base model, serve the fine-tuned
version to the official `openai` client, billed by the token, and roll back with promote.

Kept tiny (a few dozen conversations, one epoch): what it checks is the path, not the quality
(``examples/support-chat`` is the quality bar)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from openai import OpenAI

from tests.e2e.conftest import create_key, run_cli, running_server

pytestmark = pytest.mark.e2e

QUICK = """\
training:
  epochs: 1
  max_examples: 24
  batch_size: 8
  max_length: 512
  export: {quantization: q8_0, parity_conversations: 4}
"""
GENERATION = """\
generation:
  max_tokens: 24
  temperature: 0
engine:
  context_tokens: 1024
  parallel: 4
  threads: 2
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("chat-finetune")
    run_cli("init", "desk", "--template", "chat", cwd=root)
    project = root / "desk"
    config = project / "forgeline.yaml"
    text = config.read_text()
    text = text[: text.index("generation:")] + GENERATION + text[text.index("data:") :]
    text = text[: text.index("training:")] + QUICK + "\n" + text[text.index("serve:") :]
    config.write_text(text)
    # v1: the base model as it is; v2: fine-tuned.
    config.write_text(text[: text.index("training:")] + text[text.index("serve:") :])
    assert "Registered desk v1" in run_cli("train", cwd=project).stdout
    config.write_text(text)
    result = run_cli("train", cwd=project)
    assert "Registered desk v2" in result.stdout, result.stdout
    return project


def test_training_exports_a_gguf_into_the_version_with_what_it_came_from(project: Path) -> None:
    version = project / "models/desk/v2"
    settings = json.loads((version / "chat.json").read_text())
    assert (version / "model.gguf").stat().st_size > 50 * 2**20
    assert settings["gguf"]["base_model"] is None and settings["gguf"]["path"] is None
    assert settings["tuned_from"]["base_model"] == "smollm2-135m"
    metrics = settings["training_metrics"]
    assert metrics["train_conversations"] == 24 and metrics["lora_rank"] == 16
    assert metrics["export_quantization"] == "q8_0"
    assert metrics["parity_token_agreement"] >= 0.9
    assert metrics["train_tokens_per_second"] > 0


def test_evaluate_measures_the_fine_tuned_model_beside_its_base(project: Path) -> None:
    result = run_cli("evaluate", cwd=project)
    assert "ROUGE-L" in result.stdout
    evaluation = project / "models/desk/v2/evaluation"
    metrics = json.loads((evaluation / "metrics.json").read_text())
    for name in ("perplexity", "rouge_l", "exact_match", "mean_reply_words"):
        assert name in metrics and f"base_{name}" in metrics
    assert metrics["perplexity"] != metrics["base_perplexity"]
    assert metrics["conversations"] == 12
    report = (evaluation / "report.html").read_text()
    assert "base model&#39;s reply" in report or "base model's reply" in report
    # The card beside the report: base model, data fingerprint, LoRA settings, test numbers.
    card = (evaluation / "MODEL_CARD.md").read_text()
    assert "smollm2-135m" in card and "fingerprint" in card and "| lora_rank | 16 |" in card
    assert "## Test metrics" in card and "ROUGE-L" in card


def test_the_fine_tuned_version_is_served_billed_and_rolled_back(project: Path) -> None:
    key = create_key(project, "--tenant", "acme", "--plan", "pro")
    question = "My card was declined. What can I do?"
    with running_server(project) as base:
        client = OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)
        tuned = client.chat.completions.create(
            model="desk", messages=[{"role": "user", "content": question}]
        )
        assert _served_version(client) == "v2"
    assert tuned.choices[0].message.content and tuned.usage is not None
    with sqlite3.connect(project / "forgeline.db") as db:
        billed = db.execute(
            "SELECT input_tokens, output_tokens FROM usage_records WHERE request_id = ?",
            (tuned.id.removeprefix("chatcmpl-"),),
        ).fetchone()
    assert billed == (tuned.usage.prompt_tokens, tuned.usage.completion_tokens)

    run_cli("models", "promote", "v1", cwd=project)
    with running_server(project) as base:
        client = OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)
        rolled_back = client.chat.completions.create(
            model="desk", messages=[{"role": "user", "content": question}]
        )
        # The base version serves again. (Its reply may equal the tuned one's: a few steps of
        # tuning do not always change a short greedy reply.)
        assert _served_version(client) == "v1"
    assert rolled_back.choices[0].message.content


def _served_version(client: OpenAI) -> str:
    """The version of `desk` the server holds, from /v1/models (Forgeline's field beside
    OpenAI's)."""
    (model,) = [m for m in client.models.list().data if m.id == "desk"]
    return str((model.model_extra or {})["version"])
