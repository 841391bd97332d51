"""The schema of ``forgeline.yaml``: the one source of truth for project configuration.

This module holds the project, its data and its model; :mod:`forgeline.config.service` the
sections about running the API (serve, billing, database, redis).

Every section forbids unknown keys, so a typo is an error rather than a silently ignored setting.
Paths are kept as written; :func:`forgeline.config.load.load_project` resolves them against the
directory of the config file and checks that they exist before any work starts.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, TypeAdapter, field_validator, model_validator

from forgeline.config.chat import ChatConfig
from forgeline.config.data_files import TableFiles
from forgeline.config.encoder import CompressConfig
from forgeline.config.entities import TokenClassificationConfig
from forgeline.config.federated import FederatedConfig
from forgeline.config.knowledge import KnowledgeQAConfig
from forgeline.config.privacy import RedactedTexts
from forgeline.config.project import ProjectBase
from forgeline.config.sections import Section
from forgeline.config.training import TrainingConfig


class TextDataConfig(TableFiles, RedactedTexts):
    text_column: str = Field("text", min_length=1)
    label_column: str = Field("label", min_length=1)


ColumnKind = Literal["numeric", "categorical", "boolean"]


class TabularDataConfig(TableFiles):
    target: str = Field(min_length=1, description="The column to predict.")
    positive: str | None = Field(
        None,
        description=(
            "The target value that counts as the event (e.g. 'bad', '1', 'yes'). Inferred for "
            "1/0, yes/no, true/false and bad/good targets."
        ),
    )
    columns: dict[str, ColumnKind] = Field(
        default_factory=dict, description="Override the inferred kind of a column."
    )
    drop: list[str] = Field(default_factory=list, description="Columns never used as features.")
    derived: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Extra numeric features computed from numeric input columns, as name: expression "
            "(+ - * / ** %, comparisons, & | ~, where(condition, a, b), minimum, maximum, abs, "
            "log, sqrt and other element-wise functions), e.g. 'utilization: bill_amt1 / "
            "limit_bal'. Requests send only the input columns. The value is missing where an "
            "input it reads is missing or the result is not finite (a division by zero)."
        ),
    )
    sensitive_as_features: bool = Field(
        False,
        description=(
            "Also use the sensitive columns as model inputs (off: audited, not used). The "
            "numeric column behind a band (age for age_band) is an input either way."
        ),
    )


class FallbackConfig(Section):
    """Out-of-scope handling: low-confidence predictions come back as ``label``."""

    label: str = Field(min_length=1, description="Label returned when the model is not confident.")
    score: Literal["auto", "probability", "energy"] = Field(
        "auto",
        description=(
            "How confidence is measured: the top class probability, or the energy score "
            "(log-sum-exp of the logits), which tells unfamiliar inputs apart better on CLINC150. "
            "'auto' takes the one that catches more out-of-scope validation examples within the "
            "accuracy budget (probability on a tie or when the validation split has none), or "
            "probability when threshold is a number."
        ),
    )
    threshold: float | Literal["auto"] = Field(
        "auto",
        description=(
            "Lowest confidence score at which the model is trusted (a probability unless score "
            "is energy). 'auto' picks, on the validation split, the highest threshold that gives "
            "up at most max_in_scope_accuracy_drop of in-scope accuracy."
        ),
    )
    max_in_scope_accuracy_drop: float = Field(
        0.002,
        ge=0,
        le=1,
        description="With threshold 'auto': largest loss of validation in-scope accuracy allowed.",
    )

    @model_validator(mode="after")
    def _threshold_is_a_probability(self) -> FallbackConfig:
        if (
            isinstance(self.threshold, float)
            and self.score != "energy"
            and not 0 <= self.threshold <= 1
        ):
            raise ValueError(
                f"threshold must be a probability between 0 and 1, or 'auto' (got "
                f"{self.threshold}); energy thresholds need score: energy"
            )
        return self


class TextTrainingConfig(TrainingConfig):
    epochs: float | Literal["auto"] = Field(
        "auto",
        description="Passes over the training data. auto: enough for about 2,300 optimizer "
        "steps, between 3 and 20 (small data sets need more passes, large ones fewer).",
    )
    max_length: int | Literal["auto"] = Field(
        "auto",
        description="Tokens per text; longer inputs are truncated. auto: the shortest multiple "
        "of 8 that holds 99% of the training texts whole.",
    )

    @field_validator("epochs")
    @classmethod
    def _epochs_in_range(cls, value: float | str) -> float | str:
        if isinstance(value, float | int) and not 0 < value <= 100:
            raise ValueError(f"epochs must be above 0 and at most 100, or 'auto' (got {value})")
        return value

    @field_validator("max_length")
    @classmethod
    def _length_in_range(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 8 <= value <= 512:
            raise ValueError(f"max_length must be between 8 and 512, or 'auto' (got {value})")
        return value


class TextClassificationConfig(ProjectBase):
    """Fine-tune a pretrained text encoder to put one label on each text."""

    task: Literal["text-classification"]
    base_model: str = Field(
        "minilm-l6", description="A catalogue name (minilm-l6) or a Hugging Face model directory."
    )
    data: TextDataConfig
    training: TextTrainingConfig = TextTrainingConfig()
    fallback: FallbackConfig | None = None
    compress: CompressConfig = CompressConfig()

    @property
    def base(self) -> str:
        return self.base_model


class GradientBoostingConfig(Section):
    learning_rate: float = Field(0.03, gt=0, le=1)
    max_rounds: int = Field(2000, ge=1, description="Upper bound; early stopping picks fewer.")
    early_stopping_rounds: int = Field(100, ge=1)
    num_leaves: int = Field(15, ge=2)
    min_child_samples: int = Field(50, ge=1)
    feature_fraction: float = Field(0.8, gt=0, le=1)


class TabularModelConfig(Section):
    kind: Literal["lightgbm", "logistic"] = Field(
        "lightgbm", description="lightgbm (gradient boosting) or logistic (interpretable baseline)."
    )
    compare_baseline: bool = Field(
        True, description="Also train the other kind and compare both in the report."
    )
    class_weight: Literal["balanced", "none"] = "balanced"
    calibration: Literal["auto", "isotonic", "platt", "none"] = Field(
        "auto", description="auto picks isotonic or Platt by Brier score on validation data."
    )
    lightgbm: GradientBoostingConfig = GradientBoostingConfig()
    seed: int = 42


class ScorecardConfig(Section):
    """Points scaling: score = offset + factor * ln(odds of the non-event)."""

    base_score: float = Field(600, description="Score at which the good:bad odds are base_odds.")
    base_odds: float = Field(50, gt=0, description="Good:bad odds at base_score (50 means 50:1).")
    points_to_double_odds: float = Field(20, gt=0)


class DecisionConfig(Section):
    threshold: float | Literal["auto"] = Field(
        "auto",
        description=(
            "Event probability at or above which the decision is `above`. 'auto' maximises "
            "TPR - FPR (the KS point) on validation data."
        ),
    )
    above: str = Field("decline", min_length=1)
    below: str = Field("approve", min_length=1)
    reason_codes: int = Field(4, ge=0, le=20, description="How many reason codes to return.")

    @model_validator(mode="after")
    def _threshold_is_a_probability(self) -> DecisionConfig:
        if isinstance(self.threshold, float) and not 0 < self.threshold < 1:
            raise ValueError(f"threshold must be between 0 and 1, or 'auto' (got {self.threshold})")
        return self


class TabularClassificationConfig(ProjectBase):
    """Score rows of a table for the chance of an event (e.g. credit default)."""

    task: Literal["tabular-classification"]
    data: TabularDataConfig
    model: TabularModelConfig = TabularModelConfig()
    scorecard: ScorecardConfig = ScorecardConfig()
    decision: DecisionConfig = DecisionConfig()
    federated: FederatedConfig | None = None

    @model_validator(mode="after")
    def _federated_model(self) -> TabularClassificationConfig:
        federated = self.federated
        if federated is None:
            return self
        trees = federated.strategy == "cyclic"
        if trees != (self.model.kind == "lightgbm"):
            raise ValueError(
                f"federated.strategy: {federated.strategy} does not train model.kind: "
                f"{self.model.kind}; gradient boosting (lightgbm) trains cyclic, logistic "
                "regression fedavg, fedprox or fedadam"
            )
        if self.model.calibration == "isotonic":
            raise ValueError(
                "model.calibration: isotonic regression needs the validation rows in one place; "
                "a federated model is calibrated with Platt scaling (platt or auto) or not (none)"
            )
        return self

    @property
    def base(self) -> str:
        return self.model.kind


AnyTaskConfig = (
    TextClassificationConfig
    | TabularClassificationConfig
    | ChatConfig
    | TokenClassificationConfig
    | KnowledgeQAConfig
)
"""A Forgeline project: one model, its data, how to train it and how to serve it."""

PROJECT_CONFIG: TypeAdapter[AnyTaskConfig] = TypeAdapter(
    Annotated[AnyTaskConfig, Field(discriminator="task")]
)
"""Validates a whole forgeline.yaml; the ``task`` key selects the schema of the rest."""
