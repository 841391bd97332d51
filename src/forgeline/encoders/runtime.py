"""What runs an encoder network at prediction time: PyTorch, or ONNX Runtime once a model is
compressed.

Both take the tokenizer's NumPy arrays and return logits (one row per text for a classifier, one
per token for a tagger), so everything around the network is shared by the two runtimes and
they cannot drift apart.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from numpy.typing import NDArray
from transformers import PreTrainedModel

ONNX_FILE = "model.onnx"
PREDICT_BATCH_SIZE = 64


class PretrainedLoader(Protocol):
    """A transformers auto class (``AutoModelForSequenceClassification``, ...)."""

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: Any, *model_args: Any, **kwargs: Any
    ) -> Any: ...


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
    def load(cls, directory: Path, architecture: type[PretrainedLoader]) -> TorchEncoder:
        # use_safetensors=True: never fall back to a pickled pytorch_model.bin.
        return cls(architecture.from_pretrained(directory, use_safetensors=True))


def usable_cores() -> int:
    """The cores this process may run on (its affinity, e.g. a container's cpuset), not the
    host's count."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def onnx_session(model_bytes: bytes) -> Any:
    """An ONNX Runtime CPU session for serving (an ``onnxruntime.InferenceSession``)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    # Every core, but no spin-waiting: ONNX Runtime's idle threads otherwise spin between
    # operators and starve the HTTP event loop that parses requests and gathers batches.
    # On 2 cores this took requests/s at concurrency 32 from 415 (one thread, leaving a
    # core to the loop) and 478 (two spinning threads) to 645 (benchmarks/serve_bench.py).
    options.intra_op_num_threads = usable_cores()
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


class OnnxEncoder:
    runtime = "onnx"

    def __init__(self, model_bytes: bytes) -> None:
        self._bytes = model_bytes
        self._session = onnx_session(model_bytes)
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


def load_encoder(directory: Path, architecture: type[PretrainedLoader]) -> Encoder:
    """The saved model: ONNX when a compressed version, else PyTorch weights of ``architecture``."""
    if (directory / ONNX_FILE).is_file():
        return OnnxEncoder.load(directory)
    return TorchEncoder.load(directory, architecture)


def softmax(logits: NDArray[np.float32]) -> NDArray[np.float32]:
    """Probabilities over the last axis (classes), computed stably."""
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis=-1, keepdims=True), dtype=np.float32)
