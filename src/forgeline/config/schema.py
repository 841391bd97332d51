"""The schema of ``forgeline.yaml``: the one source of truth for project configuration.

Every section forbids unknown keys, so a typo is an error rather than a silently ignored setting.
Paths are kept as written; :func:`forgeline.config.load.load_project` resolves them against the
directory of the config file and checks that they exist before any work starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SplitConfig(_Section):
    """How to carve validation and test sets out of ``data.train`` when they are not given."""

    validation: float = Field(0.1, gt=0, lt=0.5, description="Fraction held out for validation.")
    test: float = Field(0.1, gt=0, lt=0.5, description="Fraction held out for the final test.")
    seed: int = Field(42, description="Seed of the stratified split.")


class DataConfig(_Section):
    train: Path = Field(description="Training data: a .csv, .jsonl or .parquet file.")
    validation: Path | None = Field(
        None, description="Validation data used for early stopping; split from train if absent."
    )
    test: Path | None = Field(
        None, description="Held-out test data for `forgeline evaluate`; split from train if absent."
    )
    text_column: str = Field("text", min_length=1)
    label_column: str = Field("label", min_length=1)
    split: SplitConfig = SplitConfig()

    @model_validator(mode="after")
    def _validation_and_test_together(self) -> DataConfig:
        if (self.validation is None) != (self.test is None):
            raise ValueError(
                "give both data.validation and data.test, or neither (then both are split "
                "from data.train)"
            )
        return self

    def files(self) -> dict[str, Path]:
        """The data files by config field, for existence checks and fingerprints."""
        named = {"train": self.train, "validation": self.validation, "test": self.test}
        return {field: path for field, path in named.items() if path is not None}


class TrainingConfig(_Section):
    epochs: float = Field(3, gt=0, le=100)
    learning_rate: float = Field(1e-4, gt=0, lt=1)
    batch_size: int = Field(32, ge=1, le=4096)
    max_length: int = Field(64, ge=8, le=512, description="Longer inputs are truncated.")
    warmup_ratio: float = Field(0.06, ge=0, lt=1)
    weight_decay: float = Field(0.01, ge=0, lt=1)
    early_stopping_patience: int = Field(
        2, ge=1, description="Epochs without a better validation macro-F1 before stopping."
    )
    seed: int = 42
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto uses CUDA when available, else the CPU."
    )


class FallbackConfig(_Section):
    """Out-of-scope handling: low-confidence predictions come back as ``label``."""

    label: str = Field(min_length=1, description="Label returned when the model is not confident.")
    threshold: float | Literal["auto"] = Field(
        "auto",
        description=(
            "Minimum top probability to trust the model. 'auto' picks the threshold on the "
            "validation split that maximises the mean of in-scope accuracy and fallback recall, "
            "giving up at most max_in_scope_accuracy_drop of in-scope accuracy."
        ),
    )
    max_in_scope_accuracy_drop: float = Field(
        0.01,
        ge=0,
        le=1,
        description="With threshold 'auto': largest loss of validation in-scope accuracy allowed.",
    )

    @model_validator(mode="after")
    def _threshold_is_a_probability(self) -> FallbackConfig:
        if isinstance(self.threshold, float) and not 0 <= self.threshold <= 1:
            raise ValueError("fallback.threshold must be between 0 and 1, or 'auto'")
        return self


class LimitsConfig(_Section):
    max_inputs_per_request: int = Field(64, ge=1)
    max_input_chars: int = Field(2000, ge=1)
    max_body_bytes: int = Field(1_000_000, ge=1024)


class ServeConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    limits: LimitsConfig = LimitsConfig()


class ProjectConfig(_Section):
    """A Forgeline project: one model, its data, how to train it and how to serve it."""

    name: str = Field(
        pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$",
        description="Model name in the registry and in URLs (lowercase, digits, . _ -).",
    )
    task: Literal["text-classification"] = Field(description="What the model does.")
    base_model: str = Field(
        "minilm-l6", description="A catalogue name (minilm-l6) or a Hugging Face model directory."
    )
    data: DataConfig
    training: TrainingConfig = TrainingConfig()
    fallback: FallbackConfig | None = None
    serve: ServeConfig = ServeConfig()
    registry: Path = Field(Path("models"), description="Directory of the model registry.")
