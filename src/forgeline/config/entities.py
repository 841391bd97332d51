"""The config of a ``token-classification`` project: a fine-tuned encoder that finds entities
(names, places, order numbers) in text and returns them as character spans."""

from __future__ import annotations

from typing import ClassVar, Literal, Self

from pydantic import Field, field_validator, model_validator

from forgeline.config.data_files import DataFiles
from forgeline.config.encoder import CompressConfig
from forgeline.config.project import ProjectBase
from forgeline.config.training import TrainingConfig

TOKEN_PER_LINE_SUFFIXES = (".conll", ".txt", ".bio", ".iob", ".tsv")
"""Files of one token and its tag per line, sentences separated by a blank line."""


class EntityDataConfig(DataFiles):
    """Labelled entities: token-per-line files (.conll, .txt, .bio, .iob, .tsv: a token and its
    tag per line, IOB1, IOB2 or IOBES), or texts with character spans (.jsonl, .json)."""

    suffixes: ClassVar[tuple[str, ...]] = (*TOKEN_PER_LINE_SUFFIXES, ".jsonl", ".json")

    text_field: str = Field("text", min_length=1, description="JSONL: the field with the text.")
    entities_field: str = Field(
        "entities",
        min_length=1,
        description="JSONL: the field with the list of {start, end, label} spans.",
    )


class EntityTrainingConfig(TrainingConfig):
    """Fine-tuning defaults for tagging: more epochs than classification (entities are rarer
    than texts, so each epoch carries less signal), windows for long texts. The learning rate
    and patience were chosen on WNUT-17's dev set (5e-5 and 3 over 1e-4 and 2: validation
    entity F1 0.582 against 0.566)."""

    epochs: float = Field(10, gt=0, le=100)
    learning_rate: float = Field(5e-5, gt=0, lt=1)
    batch_size: int = Field(16, ge=1, le=4096)
    max_length: int = Field(
        128, ge=16, le=512, description="Tokens per window; longer texts are cut into windows."
    )
    stride: int = Field(
        32, ge=0, le=256, description="Tokens shared by consecutive windows of a long text."
    )
    early_stopping_patience: int = Field(
        3, ge=1, description="Epochs without a better validation entity F1 before stopping."
    )

    @model_validator(mode="after")
    def _windows_move_forward(self) -> Self:
        # Each window must move on by at least half its length (the room left once its two
        # special tokens are in): a longer overlap re-reads most tokens for little more context.
        if self.stride >= (self.max_length - 2) // 2:
            raise ValueError(
                f"stride ({self.stride}) must be less than half of max_length - 2 "
                f"({(self.max_length - 2) // 2} for max_length {self.max_length})"
            )
        return self


class TokenClassificationConfig(ProjectBase):
    """Fine-tune a pretrained text encoder to find typed entities in text."""

    task: Literal["token-classification"]
    base_model: str = Field(
        "minilm-l6", description="A catalogue name (minilm-l6) or a Hugging Face model directory."
    )
    data: EntityDataConfig
    training: EntityTrainingConfig = EntityTrainingConfig()
    min_score: dict[str, float] = Field(
        default_factory=dict,
        description="Per entity type, the lowest score of an entity that is returned "
        "(e.g. {person: 0.6}); types not named return every entity found.",
    )
    compress: CompressConfig = CompressConfig()

    @field_validator("min_score")
    @classmethod
    def _scores_are_probabilities(cls, value: dict[str, float]) -> dict[str, float]:
        for label, score in value.items():
            if not 0 <= score <= 1:
                raise ValueError(f"min_score.{label}: must be between 0 and 1 (got {score})")
        return value

    @property
    def base(self) -> str:
        return self.base_model
