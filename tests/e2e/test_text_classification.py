"""The README's path on a small data set: init, train, evaluate, predict, serve over HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import api_client, report_in_browser, run_cli, running_server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def trained_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("e2e")
    run_cli("init", "support", "--template", "text-classification", cwd=root)
    project = root / "support"
    config = project / "forgeline.yaml"
    # Smaller limits than the template so the test can exceed them cheaply.
    text = config.read_text().replace("max_inputs_per_request: 64", "max_inputs_per_request: 4")
    text = text.replace("max_input_chars: 2000", "max_input_chars: 200")
    # The example's validation split has 28 texts: one changed prediction moves macro-F1 by
    # about 0.03, so the default 0.01 tolerance is too fine a test of int8 here.
    config.write_text(text + "compress:\n  max_metric_drop: 0.1\n")
    result = run_cli("train", cwd=project)
    assert "Registered support v1" in result.stdout
    return project


def test_train_registers_a_verified_version(trained_project: Path) -> None:
    version = trained_project / "models/support/v1"
    manifest = json.loads((version / "forgeline-manifest.json").read_text())
    assert manifest["task"] == "text-classification"
    assert "other" in manifest["labels"]
    assert (version / "model.safetensors").is_file()
    assert not list(version.glob("*.bin"))
    metrics = json.loads((version / "metrics.json").read_text())
    # The template's 'other' texts in validation decide which confidence score is used.
    recalls = {s: metrics[f"validation_fallback_recall_{s}"] for s in ("probability", "energy")}
    assert metrics["fallback_score"] == max(recalls, key=lambda s: (recalls[s], s == "probability"))
    if metrics["fallback_score"] == "probability":
        assert 0 <= metrics["fallback_threshold"] <= 1
    assert metrics["validation_macro_f1"] > 0.7


def test_evaluate_writes_metrics_and_a_self_contained_report(trained_project: Path) -> None:
    result = run_cli("evaluate", cwd=trained_project)
    assert "macro F1" in result.stdout
    evaluation = trained_project / "models/support/v1/evaluation"
    metrics = json.loads((evaluation / "metrics.json").read_text())
    assert metrics["accuracy"] > 0.7, metrics["accuracy"]  # 7 classes: chance is about 0.14
    assert set(metrics) >= {"macro_f1", "micro_f1", "expected_calibration_error", "per_class"}
    report = (evaluation / "report.html").read_text()
    assert "Confusion matrix" in report and "data:image/png;base64," in report
    assert "http://" not in report and "https://" not in report  # viewable offline


def test_predict_texts_and_files(trained_project: Path, tmp_path: Path) -> None:
    result = run_cli("predict", "--json", "I lost my credit card yesterday", cwd=trained_project)
    prediction = json.loads(result.stdout.strip())
    assert prediction["label"] == "lost_card"
    inputs = tmp_path / "in.csv"
    inputs.write_text("id,text\n7,reset my password\n9,when does the branch open\n")
    output = tmp_path / "out.jsonl"
    run_cli("predict", "--file", str(inputs), "--output", str(output), cwd=trained_project)
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert [(row["id"], row["text"]) for row in rows] == [
        ("7", "reset my password"),
        ("9", "when does the branch open"),
    ]
    assert [row["label"] for row in rows] == ["reset_password", "opening_hours"]
    assert [row["fallback"] for row in rows] == [False, False]


def test_server_over_http(trained_project: Path) -> None:
    with running_server(trained_project) as base, api_client(trained_project) as api:
        assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}
        [model] = api.get(f"{base}/v1/models").json()["data"]
        assert model["name"] == "support"

        texts = ["I lost my debit card", "send 50 dollars to my mom", "tell me a joke"]
        response = api.post(f"{base}/v1/models/support/predict", json={"inputs": texts}, timeout=30)
        assert response.status_code == 200
        predictions = response.json()["predictions"]
        assert [p["label"] for p in predictions] == ["lost_card", "transfer_money", "other"]
        assert all(abs(sum(p["probabilities"].values()) - 1) < 1e-3 for p in predictions)

        too_many = api.post(f"{base}/v1/models/support/predict", json={"inputs": ["a"] * 5})
        assert too_many.status_code == 422
        assert "max_inputs_per_request=4" in too_many.json()["error"]["message"]

        too_long = api.post(f"{base}/v1/models/support/predict", json={"inputs": ["a" * 201]})
        assert too_long.status_code == 422
        assert "max_input_chars=200" in too_long.json()["error"]["message"]

        huge = api.post(f"{base}/v1/models/support/predict", content=b"{" + b" " * 2_000_000 + b"}")
        assert huge.status_code == 413
        assert "max_body_bytes" in huge.json()["error"]["message"]

        not_json = api.post(
            f"{base}/v1/models/support/predict",
            content=b"not json",
            headers={"content-type": "application/json"},
        )
        assert not_json.status_code == 400
        assert not_json.json()["error"]["code"] == "invalid_json"

        not_yet = api.post(f"{base}/v1/models/support/explain", json={"inputs": ["hello"]})
        assert not_yet.status_code == 501
        assert not_yet.json()["error"]["code"] == "not_supported"

        assert httpx.get(f"{base}/docs").status_code == 200
        assert "/v1/models/{name}/predict" in httpx.get(f"{base}/openapi.json").json()["paths"]


def test_report_renders_offline_in_a_real_browser(trained_project: Path) -> None:
    """Open report.html in headless Chromium: every plot decodes and nothing is fetched."""
    report = trained_project / "models/support/v1/evaluation/report.html"
    if not report.is_file():
        run_cli("evaluate", cwd=trained_project)
    with report_in_browser(report) as (page, outside):
        images = page.evaluate(
            "Array.from(document.images).map(i => [i.alt, i.complete && i.naturalWidth > 0])"
        )
        headings = page.locator("h2").all_inner_texts()
    assert dict(images) == {"Confusion matrix": True, "Calibration": True}
    assert {"Per-class results", "Most confused class pairs", "Out-of-scope handling"} <= set(
        headings
    )
    assert outside == []


def test_compress_registers_an_onnx_version_and_rolls_back(trained_project: Path) -> None:
    """Last in this module: it moves `latest` to the compressed version and back."""
    result = run_cli("compress", cwd=trained_project)
    assert "Registered support v2" in result.stdout
    manifest = json.loads(
        (trained_project / "models/support/v2/forgeline-manifest.json").read_text()
    )
    assert manifest["derived_from"] == "v1"
    assert "model.onnx" in manifest["files"] and "model.safetensors" not in manifest["files"]
    card = (trained_project / "models/support/v2/MODEL_CARD.md").read_text()
    assert "latency_ms_after" in card and "size_mb_after" in card
    with running_server(trained_project) as base, api_client(trained_project) as api:
        response = api.post(
            f"{base}/v1/models/support/predict", json={"inputs": ["I lost my debit card"]}
        )
        assert response.json()["version"] == "v2"
        assert response.json()["predictions"][0]["label"] == "lost_card"
    run_cli("models", "promote", "v1", cwd=trained_project)
    assert (trained_project / "models/support/LATEST").read_text().strip() == "v1"
