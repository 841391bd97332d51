"""ONNX export and int8 quantization of a real MiniLM classifier (fresh head, a few seconds)."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import f1_score

from forgeline.compress import export_onnx, gate
from forgeline.config.encoder import CompressConfig
from forgeline.encoders.runtime import OnnxEncoder
from forgeline.errors import CompressionRefused, NotSupportedError
from forgeline.tasks.base import DataSplits
from forgeline.tasks.text_classification import TextClassifier, compression

TEXTS = ["refund my order please", "where is my parcel", "my password does not work", "hi"] * 5
LABELS = ["refund", "shipping", "account", "account"] * 5


def _data() -> DataSplits:
    frame = pd.DataFrame({"text": TEXTS, "label": LABELS})
    return DataSplits(frame, frame, frame, {"sha256": "0" * 64, "files": {}})


def test_compressed_model_runs_on_onnx_and_agrees(untrained_classifier: TextClassifier) -> None:
    # An untrained head gives near-ties that int8 may flip, so accuracy is not checked here
    # (the refusal test below covers it).
    compressed, report = compression.compress_text_classifier(
        untrained_classifier, _data(), CompressConfig(max_metric_drop=1.0), lambda _: None
    )
    assert compressed.encoder.runtime == "onnx"
    assert report["onnx_max_logit_difference"] < 1e-3
    assert report["size_mb_after"] < report["size_mb_before"] / 3
    np.testing.assert_allclose(
        compressed.predict_proba(TEXTS), untrained_classifier.predict_proba(TEXTS), atol=0.05
    )
    assert compressed.training_metrics["runtime"] == "onnx int8"


def test_export_parity_failure_is_refused(untrained_classifier: TextClassifier) -> None:
    strict = CompressConfig(max_logit_difference=1e-12)
    with pytest.raises(
        CompressionRefused, match=r"ONNX export differs from PyTorch by .* in a logit"
    ):
        compression.compress_text_classifier(untrained_classifier, _data(), strict, lambda _: None)


def test_quantization_that_costs_accuracy_is_refused(
    untrained_classifier: TextClassifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Stand in for a quantization that damages the model, measured by the real accuracy check
    # against labels the original model gets right.
    labels = untrained_classifier.predicted_labels(untrained_classifier.logits(TEXTS))
    frame = pd.DataFrame({"text": TEXTS, "label": labels})
    data = DataSplits(frame, frame, frame, {"sha256": "0" * 64, "files": {}})
    # The same network with its class rows rotated: every prediction moves to another label.
    other = copy.deepcopy(untrained_classifier.encoder.model)  # type: ignore[attr-defined]
    with torch.no_grad():
        other.classifier.weight.copy_(other.classifier.weight.roll(1, dims=0))
        other.classifier.bias.copy_(other.classifier.bias.roll(1, dims=0))
    damaged = export_onnx(other, untrained_classifier.tokenizer)
    monkeypatch.setattr(gate, "quantize_int8", lambda model, per_channel: damaged)

    def macro_f1(model: TextClassifier) -> float:
        predicted = model.predicted_labels(model.logits(TEXTS))
        return float(f1_score(labels, predicted, average="macro", zero_division=0))

    before = macro_f1(untrained_classifier)
    after = macro_f1(untrained_classifier.with_encoder(OnnxEncoder(damaged)))
    assert before > after, "the stand-in must really be worse for this test to mean anything"
    with pytest.raises(
        CompressionRefused,
        match=r"costs .* of validation macro-F1, more than compress\.max_metric_drop=0",
    ):
        compression.compress_text_classifier(
            untrained_classifier, data, CompressConfig(max_metric_drop=0.0), lambda _: None
        )


def test_an_onnx_version_is_not_compressed_again(untrained_classifier: TextClassifier) -> None:
    onnx_model = untrained_classifier.with_encoder(
        OnnxEncoder(export_onnx(untrained_classifier.encoder.model, untrained_classifier.tokenizer))  # type: ignore[attr-defined]
    )
    with pytest.raises(NotSupportedError, match="already runs on onnx"):
        compression.compress_text_classifier(onnx_model, _data(), CompressConfig(), lambda _: None)
