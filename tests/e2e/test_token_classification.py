"""The token-classification template as a user runs it: init, train, evaluate, predict,
compress, and entities over HTTP with a key, billed one unit per text."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.e2e.conftest import api_client, report_in_browser, run_cli, running_server

pytestmark = pytest.mark.e2e

MESSAGE = "Hi, this is Maria  Lopez.\tMy order #482913 for the air fryer never reached Lisbon 😀"


@pytest.fixture(scope="module")
def trained_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("e2e")
    run_cli("init", "entities", "--template", "token-classification", cwd=root)
    project = root / "entities"
    config = project / "forgeline.yaml"
    config.write_text(config.read_text().replace("epochs: 10", "epochs: 4"))
    result = run_cli("train", cwd=project)
    assert "Registered entities v1" in result.stdout
    return project


def test_train_and_evaluate_at_entity_level(trained_project: Path) -> None:
    version = trained_project / "models/entities/v1"
    manifest = json.loads((version / "forgeline-manifest.json").read_text())
    assert manifest["task"] == "token-classification"
    assert manifest["labels"] == ["city", "order_id", "person", "product"]
    result = run_cli("evaluate", cwd=trained_project)
    assert "entity F1 (micro)" in result.stdout
    metrics = json.loads((version / "evaluation/metrics.json").read_text())
    assert metrics["entity_f1"] > 0.9, metrics
    assert set(metrics["per_type"]) == {"city", "order_id", "person", "product"}
    report = (version / "evaluation/report.html").read_text()
    assert "Per entity type" in report and "Kinds of mistakes" in report


def test_predict_gives_character_spans_of_the_input_as_sent(trained_project: Path) -> None:
    result = run_cli("predict", "--json", MESSAGE, cwd=trained_project)
    entities = json.loads(result.stdout)["entities"]
    found = {(e["type"], e["text"]) for e in entities}
    assert {("person", "Maria  Lopez"), ("order_id", "#482913"), ("city", "Lisbon")} <= found
    for entity in entities:
        assert MESSAGE[entity["start"] : entity["end"]] == entity["text"]
        assert 0 <= entity["score"] <= 1


def test_server_returns_entities_and_bills_a_unit_per_text(trained_project: Path) -> None:
    with running_server(trained_project) as base, api_client(trained_project) as api:
        texts = [MESSAGE, "Do you have gift cards?"]
        response = api.post(f"{base}/v1/models/entities/predict", json={"inputs": texts})
        assert response.status_code == 200, response.text
        first, second = response.json()["predictions"]
        assert {"person", "order_id", "city"} <= {e["type"] for e in first["entities"]}
        assert second == {"entities": []}

        empty = api.post(f"{base}/v1/models/entities/predict", json={"inputs": ["  \t"]})
        assert empty.status_code == 422
        assert "inputs[0]: empty text" in empty.json()["error"]["message"]

        document = api.get(f"{base}/v1/openapi.json").json()
        operation = document["paths"]["/v1/models/entities/predict"]["post"]
        body = operation["responses"]["200"]["content"]["application/json"]["schema"]
        entity = body["properties"]["predictions"]["items"]["properties"]["entities"]["items"]
        assert entity["properties"]["type"] == {"enum": ["city", "order_id", "person", "product"]}
    month = datetime.now(UTC).strftime("%Y-%m")
    usage = json.loads(
        run_cli("usage", "--tenant", "e2e", "--month", month, "--json", cwd=trained_project).stdout
    )
    assert sum(row["units"] for row in usage if row["model"] == "entities") == 2


def test_compress_keeps_entity_f1(trained_project: Path) -> None:
    result = run_cli("compress", cwd=trained_project)
    assert "Registered entities v2" in result.stdout
    metrics = json.loads((trained_project / "models/entities/v2/metrics.json").read_text())
    assert metrics["runtime"] == "onnx int8"
    assert metrics["validation_entity_f1_change"] >= -0.01
    prediction = json.loads(run_cli("predict", "--json", MESSAGE, cwd=trained_project).stdout)
    assert ("city", "Lisbon") in {(e["type"], e["text"]) for e in prediction["entities"]}


def test_report_marks_entities_in_a_real_browser(trained_project: Path) -> None:
    """Open report.html in headless Chromium: the example texts show their entities marked
    with their types, and nothing is fetched from outside the file."""
    report = trained_project / "models/entities/v1/evaluation/report.html"
    if not report.is_file():
        run_cli("evaluate", cwd=trained_project)
    with report_in_browser(report) as (page, outside):
        headings = page.locator("h2").all_inner_texts()
        marks = page.locator("mark").all_inner_texts()
        types = page.locator("mark sub").all_inner_texts()
    assert {"Per entity type", "Kinds of mistakes", "Type confusions"} <= set(headings)
    # Each mark shows the entity's text followed by its type.
    assert len(types) == len(marks)
    assert set(types) <= {"city", "order_id", "person", "product"}
    assert all(mark.endswith(kind) for mark, kind in zip(marks, types, strict=True))
    assert outside == []
