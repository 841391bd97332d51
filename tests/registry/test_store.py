import json
from pathlib import Path

import pytest

from forgeline.errors import RegistryError
from forgeline.registry import ModelRegistry
from forgeline.registry.store import MANIFEST
from forgeline.tasks.base import predictor
from forgeline.tasks.text_classification import TextClassifier

FINGERPRINT = {"sha256": "0" * 64, "files": {}}


def _publish(registry: ModelRegistry, model: TextClassifier) -> str:
    return registry.publish(
        "demo",
        model,
        config={"name": "demo"},
        data_fingerprint=FINGERPRINT,
        base_model="minilm-l6",
    ).version


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "models")


def test_publish_writes_a_complete_version(
    registry: ModelRegistry, untrained_classifier: TextClassifier
) -> None:
    assert _publish(registry, untrained_classifier) == "v1"
    directory = registry.root / "demo" / "v1"
    for name in (
        "model.safetensors",
        "task.json",
        "forgeline.yaml",
        "metrics.json",
        "MODEL_CARD.md",
        MANIFEST,
    ):
        assert (directory / name).is_file(), name
    manifest = json.loads((directory / MANIFEST).read_text())
    assert manifest["task"] == "text-classification"
    assert manifest["labels"] == ["account", "refund", "shipping"]
    assert "torch" in manifest["packages"]
    assert "model.safetensors" in manifest["files"]
    assert "# demo v1" in (directory / "MODEL_CARD.md").read_text()


def test_versions_increase_and_latest_moves(
    registry: ModelRegistry, untrained_classifier: TextClassifier
) -> None:
    _publish(registry, untrained_classifier)
    assert _publish(registry, untrained_classifier) == "v2"
    assert registry.versions("demo") == ["v1", "v2"]
    assert registry.latest("demo") == "v2"
    registry.set_latest("demo", "v1")
    assert registry.load("demo").version.version == "v1"


def test_existing_version_is_never_overwritten(
    registry: ModelRegistry, untrained_classifier: TextClassifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    _publish(registry, untrained_classifier)
    before = (registry.root / "demo/v1/forgeline-manifest.json").read_bytes()
    # Simulate a concurrent writer that already took the next version number.
    monkeypatch.setattr(registry, "versions", lambda name: [])
    with pytest.raises(RegistryError, match="already exists; versions are immutable"):
        _publish(registry, untrained_classifier)
    assert (registry.root / "demo/v1/forgeline-manifest.json").read_bytes() == before
    assert not list((registry.root / "demo").glob(".staging-*"))


def test_loaded_model_predicts_like_the_saved_one(
    registry: ModelRegistry, untrained_classifier: TextClassifier
) -> None:
    _publish(registry, untrained_classifier)
    loaded = predictor(registry.load("demo").model)
    texts = ["where is my parcel", "refund please"]
    assert loaded.predict(texts) == untrained_classifier.predict(texts)


def test_refuses_pickle_files(
    registry: ModelRegistry, untrained_classifier: TextClassifier
) -> None:
    _publish(registry, untrained_classifier)
    (registry.root / "demo/v1/pytorch_model.bin").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(RegistryError, match=r"refusing to load a pickle-based file \(\.bin\)"):
        registry.load("demo")


def test_refuses_directory_without_manifest(
    registry: ModelRegistry, untrained_classifier: TextClassifier
) -> None:
    _publish(registry, untrained_classifier)
    (registry.root / "demo/v1" / MANIFEST).unlink()
    with pytest.raises(RegistryError, match="not a Forgeline model"):
        registry.load("demo")


def test_refuses_changed_weights(
    registry: ModelRegistry, untrained_classifier: TextClassifier
) -> None:
    _publish(registry, untrained_classifier)
    weights = registry.root / "demo/v1/model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(RegistryError, match="contents changed since the model was registered"):
        registry.load("demo")


def test_refuses_unlisted_files(
    registry: ModelRegistry, untrained_classifier: TextClassifier
) -> None:
    _publish(registry, untrained_classifier)
    (registry.root / "demo/v1/extra.py").write_text("print('hi')")
    with pytest.raises(RegistryError, match="file not written by the Forgeline registry"):
        registry.load("demo")


def test_evaluation_outputs_do_not_break_verification(
    registry: ModelRegistry, untrained_classifier: TextClassifier
) -> None:
    version = registry.publish(
        "demo", untrained_classifier, config={}, data_fingerprint=FINGERPRINT, base_model="x"
    )
    version.evaluation_dir.mkdir()
    (version.evaluation_dir / "metrics.json").write_text("{}")
    assert registry.load("demo").version.version == "v1"


def test_unknown_model_and_version(
    registry: ModelRegistry, untrained_classifier: TextClassifier
) -> None:
    with pytest.raises(RegistryError, match=r"no trained model 'demo'.*forgeline train"):
        registry.load("demo")
    _publish(registry, untrained_classifier)
    with pytest.raises(RegistryError, match=r"no version 'v9' \(versions: v1\)"):
        registry.load("demo", "v9")


def test_a_version_never_holds_the_service_sections(
    registry: ModelRegistry, untrained_classifier: TextClassifier
) -> None:
    """Database and Redis URLs carry passwords; a model version (shared, frozen by its
    manifest) must not copy them, nor the serve and billing setup of one operator."""
    config = {
        "name": "demo",
        "task": "text-classification",
        "training": {"epochs": 2},
        "database": {"url": "postgresql+psycopg://app:s3cret@db.internal/forgeline"},
        "redis": {"url": "redis://:s3cret@cache.internal:6379/0"},
        "serve": {"port": 8000},
        "billing": {"plans": {}},
    }
    version = registry.publish(
        "demo",
        untrained_classifier,
        config=config,
        data_fingerprint=FINGERPRINT,
        base_model="minilm-l6",
    )
    written = (version.path / "forgeline.yaml").read_text()
    assert "s3cret" not in written and "internal" not in written
    assert version.config() == {
        "name": "demo",
        "task": "text-classification",
        "training": {"epochs": 2},
    }
