"""The ``data:`` sections' shared part: where the train, validation and test files are, how to
read them, and (for tables) which columns a fairness audit looks at."""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import ClassVar

from pydantic import Field, field_validator, model_validator

from forgeline.config.project import SplitConfig
from forgeline.config.sections import Section
from forgeline.data.io import SUPPORTED_SUFFIXES, TextFormat


class BandConfig(Section):
    """A numeric column cut into bands, e.g. ages 18-25, 25-35, ... for a fairness audit."""

    column: str = Field(min_length=1, description="The numeric column to band.")
    edges: list[float] = Field(min_length=1, description="Band edges, increasing.")

    @model_validator(mode="after")
    def _increasing(self) -> BandConfig:
        if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError("edges must be strictly increasing")
        return self


class DataFiles(Section):
    suffixes: ClassVar[tuple[str, ...]] = SUPPORTED_SUFFIXES
    """The file types the task reads."""

    train: Path = Field(description="Training data file.")
    validation: Path | None = Field(
        None,
        description="Validation data used for early stopping; split from train if absent "
        "(seeded, stratified).",
    )
    test: Path | None = Field(
        None, description="Held-out test data for `forgeline evaluate`; split from train if absent."
    )
    split: SplitConfig = SplitConfig()
    encoding: str = Field(
        "utf-8",
        description="The text encoding of text data files, e.g. latin-1 or cp1252 (a UTF-8 "
        "byte-order mark is accepted).",
    )

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown encoding '{value}' (e.g. utf-8, latin-1, cp1252)") from None
        return value

    def text_format(self) -> TextFormat:
        return TextFormat(encoding=self.encoding)

    def files(self) -> dict[str, Path]:
        """The data files by config field, for existence checks and fingerprints."""
        named = {"train": self.train, "validation": self.validation, "test": self.test}
        return {field: path for field, path in named.items() if path is not None}


class TableFiles(DataFiles):
    """Data files of rows and columns (CSV, JSONL, Parquet), with optional fairness audit."""

    delimiter: str | None = Field(
        None,
        min_length=1,
        max_length=1,
        description="What separates CSV columns; detected (comma, semicolon, tab or pipe) if absent.",
    )
    sensitive: list[str] = Field(
        default_factory=list,
        description="Columns (or bands) to audit for fairness: per-group metrics in the report.",
    )
    bands: dict[str, BandConfig] = Field(
        default_factory=dict,
        description="Named bands of numeric columns, usable in `sensitive` (e.g. age_band).",
    )

    def text_format(self) -> TextFormat:
        return TextFormat(encoding=self.encoding, delimiter=self.delimiter)
