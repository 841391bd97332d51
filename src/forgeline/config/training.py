"""How a pretrained model is fine-tuned with Hugging Face ``Trainer``: the settings every task
that fine-tunes one (text and token classification, chat) shares."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from forgeline.config.sections import Section


class TrainingConfig(Section):
    """What every fine-tuning run sets the same way; epochs and lengths are each task's own."""

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
