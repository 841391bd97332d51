"""Compressing an encoder model behind two checks: the ONNX export must compute the same logits
as PyTorch, and int8 quantization may cost at most ``compress.max_metric_drop`` of the task's
validation metric. Sizes and single-input latencies before and after go in the report."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, Self, TypeVar

import numpy as np
from numpy.typing import NDArray

from forgeline.compress.onnx import export_onnx, fuse_transformer, quantize_int8
from forgeline.config.encoder import CompressConfig
from forgeline.encoders.runtime import Encoder, OnnxEncoder, TorchEncoder
from forgeline.errors import CompressionRefused, NotSupportedError
from forgeline.tasks.base import Notify, Prediction

LATENCY_INPUTS = 200


class EncoderModel(Protocol):
    """A task model that runs on an :class:`Encoder` and can be copied onto another one."""

    @property
    def encoder(self) -> Encoder: ...

    @property
    def tokenizer(self) -> Any: ...

    @property
    def training_metrics(self) -> dict[str, Any]: ...

    def logits(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Every logit the network computes for ``texts``, in a fixed order."""
        ...

    def predict(self, inputs: Sequence[Any]) -> list[Prediction]: ...

    def with_encoder(self, encoder: Encoder) -> Self: ...

    def with_metrics(self, metrics: dict[str, Any]) -> Self: ...


Model = TypeVar("Model", bound=EncoderModel)


def _latency_ms(model: EncoderModel, texts: Sequence[str]) -> float:
    """Median time of one single-input prediction: what one API call waits for."""
    timings = []
    for text in texts[:LATENCY_INPUTS]:
        started = time.perf_counter()
        model.predict([text])
        timings.append((time.perf_counter() - started) * 1000)
    return float(np.median(timings))


def compress_encoder_model(
    model: Model,
    texts: Sequence[str],
    metric: Callable[[Model], float],
    metric_key: str,
    metric_name: str,
    settings: CompressConfig,
    notify: Notify,
) -> tuple[Model, dict[str, Any]]:
    """``model`` on ONNX Runtime with int8 weights, and the report. ``metric`` measures a model
    on the validation data (higher is better); ``metric_key`` names it in the report
    (``macro_f1`` gives ``validation_macro_f1_before``, ``..._after``, ``..._change``),
    ``metric_name`` in messages (``macro-F1``)."""
    if not isinstance(model.encoder, TorchEncoder):
        raise NotSupportedError(
            f"this version already runs on {model.encoder.runtime}; compress a PyTorch version"
        )
    torch_model = model.encoder.model
    fp32 = fuse_transformer(export_onnx(torch_model, model.tokenizer), torch_model.config)
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
    before, after = metric(model), metric(quantized)
    torch_size = sum(p.numel() * p.element_size() for p in torch_model.parameters())
    report = {
        "compressed_from_runtime": "torch fp32",
        "runtime": "onnx int8",
        "onnx_max_logit_difference": difference,
        f"validation_{metric_key}_before": before,
        f"validation_{metric_key}_after": after,
        f"validation_{metric_key}_change": after - before,
        "size_mb_before": round(torch_size / 1e6, 1),
        "size_mb_after": round(len(int8) / 1e6, 1),
        "latency_ms_before": round(_latency_ms(model, texts), 2),
        "latency_ms_after": round(_latency_ms(quantized, texts), 2),
    }
    notify(
        f"int8: validation {metric_name} {before:.4f} -> {after:.4f}; size {report['size_mb_before']} MB "
        f"-> {report['size_mb_after']} MB; latency {report['latency_ms_before']} ms -> "
        f"{report['latency_ms_after']} ms per input"
    )
    if before - after > settings.max_metric_drop:
        raise CompressionRefused(
            f"int8 quantization costs {before - after:.4f} of validation {metric_name}, more than "
            f"compress.max_metric_drop={settings.max_metric_drop}; the model was not registered"
        )
    return quantized.with_metrics({**model.training_metrics, **report}), report
