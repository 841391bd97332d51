"""The knowledge-qa template as a user runs it: init, train (the encoder fine-tuned), evaluate,
predict, search over HTTP with a key (one unit per question), retrain after an edit (only the
edited entry embedded again), and a version whose embeddings were tampered with refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.e2e.conftest import api_client, run_cli, running_server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def trained_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("e2e")
    run_cli("init", "helpdesk", "--template", "knowledge-qa", cwd=root)
    project = root / "helpdesk"
    config = project / "forgeline.yaml"
    config.write_text(config.read_text().replace("epochs: 4 ", "epochs: 1 "))
    result = run_cli("train", cwd=project)
    assert "Registered helpdesk v1" in result.stdout
    return project


def test_evaluate_measures_matching_and_knowing_when_not_to_answer(trained_project: Path) -> None:
    result = run_cli("evaluate", cwd=trained_project)
    assert "recall@1" in result.stdout and "MRR" in result.stdout
    evaluation = trained_project / "models/helpdesk/v1/evaluation"
    metrics = json.loads((evaluation / "metrics.json").read_text())
    assert metrics["recall_at_3"] >= 0.85, metrics
    assert metrics["no_answer_recall"] >= 0.5, metrics  # the template's "none" questions
    report = (evaluation / "report.html").read_text()
    assert "Worst-matched questions" in report and "data:image/png;base64" in report


def test_predict_answers_from_an_entry_or_falls_back(trained_project: Path) -> None:
    result = run_cli(
        "predict",
        "--json",
        "my new card never arrived",
        "what's the weather tomorrow",
        cwd=trained_project,
    )
    answered, unknown = (json.loads(line) for line in result.stdout.splitlines())
    assert answered["decision"] == "answered"
    assert answered["entry"] == "card-not-received"
    assert answered["entries"][0]["id"] == "card-not-received"
    assert len(answered["entries"]) == 3
    assert unknown["decision"] == "fallback" and unknown["entry"] is None
    assert unknown["answer"].startswith("I could not find this")


def test_search_over_http_is_keyed_and_billed_per_question(trained_project: Path) -> None:
    questions = ["how do I change my PIN", "can I overpay my mortgage", "do you sell bitcoin"]
    with running_server(trained_project) as base, api_client(trained_project) as api:
        response = api.post(f"{base}/v1/models/helpdesk/predict", json={"inputs": questions})
        assert response.status_code == 200, response.text
        predictions = response.json()["predictions"]
        assert predictions[0]["entry"] == "card-pin-change"
        assert predictions[1]["entry"].startswith("data/guides/mortgages.md#")
        assert predictions[2]["decision"] == "fallback"
        import httpx

        anonymous = httpx.post(f"{base}/v1/models/helpdesk/predict", json={"inputs": ["hi"]})
        assert anonymous.status_code == 401
    month = datetime.now(UTC).strftime("%Y-%m")
    usage = json.loads(
        run_cli("usage", "--tenant", "e2e", "--month", month, "--json", cwd=trained_project).stdout
    )
    assert sum(row["units"] for row in usage if row["model"] == "helpdesk") == 3


def test_retraining_after_an_edit_embeds_only_what_changed(trained_project: Path) -> None:
    faq = trained_project / "data/faq.csv"
    original = faq.read_text()
    faq.write_text(original.replace("within 2 ", "within 3 ", 1))
    try:
        result = run_cli("train", cwd=trained_project)
    finally:
        faq.write_text(original)
    assert "reusing it and its embeddings" in result.stdout
    version = sorted((trained_project / "models/helpdesk").glob("v*"))[-1]
    metrics = json.loads((version / "metrics.json").read_text())
    assert metrics["texts_embedded"] == 1 and metrics["texts_reused"] > 100


def test_a_version_with_changed_embeddings_is_refused(trained_project: Path) -> None:
    index = trained_project / "models/helpdesk/v1/index.safetensors"
    original = index.read_bytes()
    tampered = bytearray(original)
    tampered[-1] ^= 0x01
    index.write_bytes(bytes(tampered))
    try:
        result = run_cli(
            "predict", "--model-version", "v1", "card lost", cwd=trained_project, check=False
        )
    finally:
        index.write_bytes(original)
    assert result.returncode != 0
    assert "contents changed since the model was registered" in result.stderr
    assert "Traceback" not in result.stderr
