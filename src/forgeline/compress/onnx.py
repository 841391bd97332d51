"""ONNX export of a transformer classifier and ONNX Runtime dynamic int8 quantization.

torch.onnx's TorchScript exporter is used rather than Optimum: it is part of the pinned torch,
handles these encoder models directly, and adds no dependency that must track transformers.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel

OPSET = 17


def export_onnx(model: PreTrainedModel, tokenizer: Any) -> bytes:
    """The model as ONNX with dynamic batch and sequence axes, logits as the output."""
    sample = tokenizer(
        ["a short text", "and a somewhat longer one"], padding=True, return_tensors="pt"
    )
    names = [name for name in ("input_ids", "attention_mask", "token_type_ids") if name in sample]
    dynamic = {name: {0: "batch", 1: "sequence"} for name in names} | {"logits": {0: "batch"}}
    model.eval()
    with tempfile.TemporaryDirectory() as work, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes about attention-mask branches not taken
        path = Path(work) / "model.onnx"
        torch.onnx.export(
            model,
            tuple(sample[name] for name in names),
            str(path),
            input_names=names,
            output_names=["logits"],
            dynamic_axes=dynamic,
            opset_version=OPSET,
            dynamo=False,
        )
        return path.read_bytes()


def quantize_int8(onnx_model: bytes, per_channel: bool) -> bytes:
    """Dynamic int8 quantization of the weights (activations quantized at run time)."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as work:
        source, target = Path(work) / "fp32.onnx", Path(work) / "int8.onnx"
        source.write_bytes(onnx_model)
        # quantize_dynamic logs a hint about optional pre-processing on the root logger.
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)
        try:
            quantize_dynamic(source, target, weight_type=QuantType.QInt8, per_channel=per_channel)
        finally:
            root.setLevel(level)
        return target.read_bytes()
