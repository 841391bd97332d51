"""What runs the network at prediction time: PyTorch, or ONNX Runtime once a model is compressed.

Both take the tokenizer's NumPy arrays and return logits, so tokenisation, batching, softmax and
the fallback threshold are shared and the two runtimes cannot drift apart.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from numpy.typing import NDArray
from transformers import AutoModelForSequenceClassification, PreTrainedModel

ONNX_FILE = "model.onnx"
PREDICT_BATCH_SIZE = 64


class Encoder(Protocol):
    runtime: str

    def logits(self, encoded: Mapping[str, NDArray[np.int64]]) -> NDArray[np.float32]: ...

    def save(self, directory: Path) -> None: ...


class TorchEncoder:
    runtime = "torch"

    def __init__(self, model: PreTrainedModel) -> None:
        model.eval()  # inference only: no dropout
        self.model = model

    def logits(self, encoded: Mapping[str, NDArray[np.int64]]) -> NDArray[np.float32]:
        tensors = {
            name: torch.from_numpy(values).to(self.model.device) for name, values in encoded.items()
        }
        with torch.inference_mode():
            output = self.model(**tensors).logits
        return np.asarray(output.float().cpu().numpy(), dtype=np.float32)

    def save(self, directory: Path) -> None:
        self.model.save_pretrained(directory, safe_serialization=True)

    @classmethod
    def load(cls, directory: Path) -> TorchEncoder:
        # use_safetensors=True: never fall back to a pickled pytorch_model.bin.
        return cls(
            AutoModelForSequenceClassification.from_pretrained(directory, use_safetensors=True)
        )


def usable_cores() -> int:
    """The cores this process may run on (its affinity, e.g. a container's cpuset), not the
    host's count."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class OnnxEncoder:
    runtime = "onnx"

    def __init__(self, model_bytes: bytes) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        # Every core, but no spin-waiting: ONNX Runtime's idle threads otherwise spin between
        # operators and starve the HTTP event loop that parses requests and gathers batches.
        # On 2 cores this took requests/s at concurrency 32 from 415 (one thread, leaving a
        # core to the loop) and 478 (two spinning threads) to 645 (benchmarks/serve_bench.py).
        options.intra_op_num_threads = usable_cores()
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._bytes = model_bytes
        self._session = ort.InferenceSession(
            model_bytes, options, providers=["CPUExecutionProvider"]
        )
        self._inputs = {i.name for i in self._session.get_inputs()}

    def logits(self, encoded: Mapping[str, NDArray[np.int64]]) -> NDArray[np.float32]:
        feed = {
            name: values.astype(np.int64)
            for name, values in encoded.items()
            if name in self._inputs
        }
        return np.asarray(self._session.run(["logits"], feed)[0], dtype=np.float32)

    def save(self, directory: Path) -> None:
        (directory / ONNX_FILE).write_bytes(self._bytes)

    @classmethod
    def load(cls, directory: Path) -> OnnxEncoder:
        return cls((directory / ONNX_FILE).read_bytes())


def load_encoder(directory: Path) -> Encoder:
    if (directory / ONNX_FILE).is_file():
        return OnnxEncoder.load(directory)
    return TorchEncoder.load(directory)


def batched_logits(
    encoder: Encoder, tokenizer: Any, texts: Sequence[str], max_length: int, num_labels: int
) -> NDArray[np.float32]:
    """Logits in input order, computed in length-sorted batches to cut padding."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    result = np.zeros((len(texts), num_labels), dtype=np.float32)
    for start in range(0, len(order), PREDICT_BATCH_SIZE):
        batch = order[start : start + PREDICT_BATCH_SIZE]
        encoded = tokenizer(
            [texts[i] for i in batch],
            truncation=True,
            max_length=max_length,
            padding=True,
            return_tensors="np",
        )
        result[batch] = encoder.logits(dict(encoded))
    return result


def softmax(logits: NDArray[np.float32]) -> NDArray[np.float32]:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis=1, keepdims=True), dtype=np.float32)


def class_probabilities(
    encoder: Encoder, tokenizer: Any, texts: Sequence[str], max_length: int, num_labels: int
) -> NDArray[np.float32]:
    return softmax(batched_logits(encoder, tokenizer, texts, max_length, num_labels))
