"""Compressing a text classifier: ONNX export checked for parity, int8 quantization checked for
accuracy, with size and latency before and after."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.metrics import f1_score

from forgeline.compress import export_onnx, quantize_int8
from forgeline.config.schema import CompressConfig
from forgeline.errors import CompressionRefused, NotSupportedError
from forgeline.tasks.base import DataSplits, Notify
from forgeline.tasks.text_classification.data import LABEL, TEXT
from forgeline.tasks.text_classification.runtime import OnnxEncoder, TorchEncoder

if TYPE_CHECKING:
    from forgeline.tasks.text_classification.model import TextClassifier

LATENCY_TEXTS = 200


def _macro_f1(model: TextClassifier, texts: list[str], truth: list[str]) -> float:
    predicted = model.predicted_labels(model.predict_proba(texts))
    return float(f1_score(truth, predicted, average="macro", zero_division=0))


def _latency_ms(model: TextClassifier, texts: list[str]) -> float:
    """Median time of one single-text prediction: what one API call waits for."""
    timings = []
    for text in texts[:LATENCY_TEXTS]:
        started = time.perf_counter()
        model.predict_proba([text])
        timings.append((time.perf_counter() - started) * 1000)
    return float(np.median(timings))


def compress_text_classifier(
    model: TextClassifier, data: DataSplits, settings: CompressConfig, notify: Notify
) -> tuple[TextClassifier, dict[str, Any]]:
    if not isinstance(model.encoder, TorchEncoder):
        raise NotSupportedError(
            f"this version already runs on {model.encoder.runtime}; compress a PyTorch version"
        )
    texts, truth = list(data.validation[TEXT]), list(data.validation[LABEL])
    fp32 = export_onnx(model.encoder.model, model.tokenizer)
    exported = model.with_encoder(OnnxEncoder(fp32))
    difference = float(np.max(np.abs(model.logits(texts) - exported.logits(texts))))
    notify(
        f"ONNX export: max |logit difference| on {len(texts)} validation texts = {difference:.2e}"
    )
    if difference > settings.max_logit_difference:
        raise CompressionRefused(
            f"ONNX export differs from PyTorch by {difference:.2e} in a logit "
            f"(limit compress.max_logit_difference={settings.max_logit_difference})"
        )
    int8 = quantize_int8(fp32, per_channel=settings.per_channel)
    quantized = model.with_encoder(OnnxEncoder(int8))
    before, after = _macro_f1(model, texts, truth), _macro_f1(quantized, texts, truth)
    torch_size = sum(p.numel() * p.element_size() for p in model.encoder.model.parameters())
    report = {
        "compressed_from_runtime": "torch fp32",
        "runtime": "onnx int8",
        "onnx_max_logit_difference": difference,
        "validation_macro_f1_before": before,
        "validation_macro_f1_after": after,
        "validation_macro_f1_change": after - before,
        "size_mb_before": round(torch_size / 1e6, 1),
        "size_mb_after": round(len(int8) / 1e6, 1),
        "latency_ms_before": round(_latency_ms(model, texts), 2),
        "latency_ms_after": round(_latency_ms(quantized, texts), 2),
    }
    notify(
        f"int8: validation macro-F1 {before:.4f} -> {after:.4f}; size {report['size_mb_before']} MB "
        f"-> {report['size_mb_after']} MB; latency {report['latency_ms_before']} ms -> "
        f"{report['latency_ms_after']} ms per text"
    )
    if before - after > settings.max_metric_drop:
        raise CompressionRefused(
            f"int8 quantization costs {before - after:.4f} of validation macro-F1, more than "
            f"compress.max_metric_drop={settings.max_metric_drop}; the model was not registered"
        )
    return quantized.with_metrics({**model.training_metrics, **report}), report
