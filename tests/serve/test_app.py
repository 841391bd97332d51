"""The HTTP API in-process (fast); tests/e2e runs it as a real server on a real port."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from forgeline.config.service import LimitsConfig, ServeConfig
from forgeline.errors import RegistryError
from forgeline.registry import ModelRegistry
from forgeline.serve import create_app
from forgeline.tasks.text_classification import TextClassifier


def _registry_with(tmp_path: Path, model: TextClassifier) -> ModelRegistry:
    registry = ModelRegistry(tmp_path / "models")
    registry.publish(
        "demo",
        model,
        config={},
        data_fingerprint={"sha256": "0" * 64, "files": {}},
        base_model="minilm-l6",
    )
    return registry


def _wait_until_ready(test_client: TestClient) -> None:
    deadline = time.monotonic() + 30
    while test_client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "models did not load"
        time.sleep(0.05)


@pytest.fixture
def client(tmp_path: Path, untrained_classifier: TextClassifier) -> Iterator[TestClient]:
    registry = _registry_with(tmp_path, untrained_classifier)
    limits = LimitsConfig(max_inputs_per_request=3, max_input_chars=50, max_body_bytes=2048)
    with TestClient(create_app(registry, ServeConfig(auth=False, limits=limits))) as test_client:
        _wait_until_ready(test_client)
        yield test_client


def test_health_and_models(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    # Anyone may ask /readyz: it gives a count, never model names.
    assert client.get("/readyz").json() == {"status": "ready", "models": 1}
    listing = client.get("/v1/models").json()
    assert listing["object"] == "list"
    [model] = listing["data"]
    assert (model["id"], model["object"], model["owned_by"]) == ("demo", "model", "forgeline")
    assert model["name"] == "demo" and model["version"] == "v1"
    assert model["capabilities"] == ["predict"]
    assert model["labels"] == ["account", "refund", "shipping"]
    assert model["input_schema"]["type"] == "string"


def test_predict_returns_one_prediction_per_input_in_order(
    client: TestClient, untrained_classifier: TextClassifier
) -> None:
    texts = ["refund my order", "where is my parcel"]
    response = client.post("/v1/models/demo/predict", json={"inputs": texts})
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == "demo" and body["version"] == "v1"
    assert body["predictions"] == untrained_classifier.predict(texts)
    for prediction in body["predictions"]:
        assert prediction["label"] in {"account", "refund", "shipping"}
        assert sum(prediction["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize(
    ("payload", "status", "code", "message"),
    [
        ({"inputs": ["a", "b", "c", "d"]}, 422, "too_many_inputs", "max_inputs_per_request=3"),
        (
            {"inputs": ["x" * 51]},
            422,
            "invalid_input",
            "inputs[0]: 51 characters is over the limit max_input_chars=50",
        ),
        ({"inputs": ["ok", 7]}, 422, "invalid_input", "inputs[1]: expected a string, got int"),
        ({"inputs": ["ok", "  "]}, 422, "invalid_input", "inputs[1]: empty text"),
        ({"inputs": []}, 422, "invalid_request", "inputs: List should have at least 1 item"),
        ({"texts": ["a"]}, 422, "invalid_request", "inputs: Field required"),
    ],
)
def test_invalid_requests_say_what_is_wrong(
    client: TestClient, payload: dict[str, object], status: int, code: str, message: str
) -> None:
    response = client.post("/v1/models/demo/predict", json=payload)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code
    assert message in error["message"]


def test_body_over_limit_is_413(client: TestClient) -> None:
    response = client.post("/v1/models/demo/predict", json={"inputs": ["y" * 3000]})
    assert response.status_code == 413
    assert "max_body_bytes=2048" in response.json()["error"]["message"]


def test_unknown_model_is_404(client: TestClient) -> None:
    response = client.post("/v1/models/nope/predict", json={"inputs": ["a"]})
    assert response.status_code == 404
    # Other models' names are not listed: a key scoped to one model must not learn them.
    assert response.json()["error"]["message"] == "no model named 'nope' is served here"


def test_openapi_has_a_typed_operation_per_model(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert "/v1/models/{name}/predict" not in spec["paths"]
    operation = spec["paths"]["/v1/models/demo/predict"]["post"]
    assert operation["operationId"] == "predict_demo"
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    items = body["properties"]["inputs"]["items"]
    assert items["type"] == "string" and items["maxLength"] == 50
    assert items["pattern"].startswith("[^")
    assert body["properties"]["inputs"]["maxItems"] == 3
    answer = operation["responses"]["200"]["content"]["application/json"]["schema"]
    prediction = answer["properties"]["predictions"]["items"]
    assert prediction["properties"]["label"] == {"enum": ["account", "refund", "shipping", "other"]}
    # Every error is documented with the body the server really sends.
    for status in ("400", "404", "413", "422", "503"):
        schema = operation["responses"][status]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/Error"}
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    assert "/v1/models/demo/explain" not in spec["paths"]  # text models cannot explain
    metrics = spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert "application/json" not in metrics
    assert client.get("/docs").status_code == 200


def test_text_that_is_not_valid_unicode_is_refused_before_the_model(client: TestClient) -> None:
    body = b'{"inputs": ["fine", "lone \\ud800 surrogate"]}'
    response = client.post(
        "/v1/models/demo/predict", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_text"
    assert error["message"].startswith("inputs[1]: text is not valid Unicode")
    # A proper surrogate pair (an emoji) is valid Unicode.
    pair = b'{"inputs": ["thanks \\ud83d\\ude00"]}'
    ok = client.post(
        "/v1/models/demo/predict", content=pair, headers={"content-type": "application/json"}
    )
    assert ok.status_code == 200


def test_invalid_json_is_400(client: TestClient) -> None:
    response = client.post(
        "/v1/models/demo/predict",
        content=b'{"inputs": [',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


def test_unknown_keys_are_rejected(client: TestClient) -> None:
    response = client.post("/v1/models/demo/predict", json={"inputs": ["a"], "top_k": 3})
    assert response.status_code == 422
    assert "top_k: Extra inputs are not permitted" in response.json()["error"]["message"]


def test_chunked_body_over_limit_is_413(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"inputs": ["'
        for _ in range(10):
            yield b"z" * 1000
        yield b'"]}'

    response = client.post(
        "/v1/models/demo/predict", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert "max_body_bytes=2048" in response.json()["error"]["message"]


def test_unknown_path_uses_the_error_format(client: TestClient) -> None:
    response = client.get("/v2/nothing")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_metrics_expose_requests_latency_batches_and_queue(client: TestClient) -> None:
    assert client.post("/v1/models/demo/predict", json={"inputs": ["a", "b"]}).status_code == 200
    client.post("/v1/models/demo/predict", json={"inputs": ["x" * 51]})
    text = client.get("/metrics").text
    assert 'forgeline_requests_total{endpoint="predict",model="demo",status="200"} 1.0' in text
    assert 'forgeline_requests_total{endpoint="predict",model="demo",status="422"} 1.0' in text
    assert 'forgeline_request_seconds_count{endpoint="predict",model="demo"} 2.0' in text
    assert 'forgeline_batch_size_sum{model="demo"} 2.0' in text
    assert 'forgeline_queue_depth{model="demo"} 0.0' in text


def test_overload_answers_503_with_retry_after(
    tmp_path: Path, untrained_classifier: TextClassifier
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from forgeline.config.service import BatchingConfig

    registry = _registry_with(tmp_path, untrained_classifier)
    tight = ServeConfig(
        auth=False, batching=BatchingConfig(max_batch_size=1, max_wait_ms=0, max_queue=1)
    )
    with TestClient(create_app(registry, tight)) as test_client:
        _wait_until_ready(test_client)
        long_text = "where is my parcel " * 20

        def call(_: int) -> tuple[int, str | None, dict[str, object]]:
            response = test_client.post("/v1/models/demo/predict", json={"inputs": [long_text]})
            return response.status_code, response.headers.get("retry-after"), response.json()

        with ThreadPoolExecutor(max_workers=16) as pool:
            outcomes = list(pool.map(call, range(48)))
    statuses = [status for status, _, _ in outcomes]
    assert 200 in statuses and 503 in statuses
    refused = [(after, body) for status, after, body in outcomes if status == 503]
    assert all(after == "1" for after, _ in refused)
    assert "max_queue=1" in str(refused[0][1]["error"])


@pytest.mark.parametrize(
    "failure",
    [
        RegistryError("/srv/secret/models/demo/v1/model.safetensors: contents changed"),
        RuntimeError("unexpected: /srv/secret/models/demo/v1 is corrupt"),
    ],
)
def test_a_model_that_fails_to_load_says_failed_without_paths(
    tmp_path: Path,
    untrained_classifier: TextClassifier,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    failure: Exception,
) -> None:
    registry = _registry_with(tmp_path, untrained_classifier)

    def broken(name: str, version: str = "latest", loaded: object = None) -> object:
        raise failure

    monkeypatch.setattr(registry, "load", broken)
    with TestClient(create_app(registry, ServeConfig(auth=False))) as test_client:
        deadline = time.monotonic() + 10
        while (ready := test_client.get("/readyz")).json()["status"] == "loading":
            assert time.monotonic() < deadline, "a failed load must not stay 'loading'"
            time.sleep(0.05)
        assert ready.status_code == 503 and ready.json() == {"status": "failed", "models": 0}
        called = test_client.post("/v1/models/demo/predict", json={"inputs": ["a"]})
        assert called.status_code == 503
        assert "secret" not in called.text and "failed to load" in called.text
    assert "/srv/secret" in caplog.text  # the operator's log has the reason


def test_a_bug_answers_500_with_the_request_id_and_no_detail(
    tmp_path: Path,
    untrained_classifier: TextClassifier,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = _registry_with(tmp_path, untrained_classifier)
    app = create_app(registry, ServeConfig(auth=False))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        _wait_until_ready(test_client)

        def crash(inputs: list[str]) -> list[dict[str, object]]:
            raise KeyError("internal detail the caller must not see: customer 4111")

        monkeypatch.setattr(TextClassifier, "predict", lambda self, inputs: crash(inputs))
        response = test_client.post("/v1/models/demo/predict", json={"inputs": ["a"]})
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["code"] == "internal_error"
    assert response.headers["x-request-id"] in error["message"]
    assert "4111" not in response.text
    assert response.headers["x-request-id"] in caplog.text
