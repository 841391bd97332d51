"""How a pretrained transformer encoder is fine-tuned and compressed: the sections shared by the
text-classification and token-classification configs."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from forgeline.config.sections import Section


class TrainingConfig(Section):
    """What every encoder task sets the same way; epochs and lengths are each task's own."""

    learning_rate: float = Field(1e-4, gt=0, lt=1)
    batch_size: int = Field(32, ge=1, le=4096)
    warmup_ratio: float = Field(0.06, ge=0, lt=1)
    weight_decay: float = Field(0.01, ge=0, lt=1)
    early_stopping_patience: int = Field(
        2,
        ge=1,
        description="Epochs without a better validation score (macro-F1, entity F1) before "
        "stopping.",
    )
    seed: int = 42
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto uses CUDA when available, else the CPU."
    )


class CompressConfig(Section):
    """`forgeline compress`: ONNX export and int8 quantization, each checked before use."""

    max_metric_drop: float = Field(
        0.01,
        ge=0,
        le=1,
        description="Refuse the int8 model if the validation metric (macro-F1 of a classifier, "
        "entity F1 of a tagger) drops by more than this.",
    )
    max_logit_difference: float = Field(
        1e-3, gt=0, description="Refuse the ONNX export if a logit differs more than this."
    )
    per_channel: bool = Field(True, description="Quantize weights per output channel.")
