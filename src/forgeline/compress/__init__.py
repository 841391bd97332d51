"""Model compression: ONNX export and int8 quantization, each checked against the original."""

from forgeline.compress.onnx import export_onnx, quantize_int8

__all__ = ["export_onnx", "quantize_int8"]
