"""``data.redact``: the personal data in a project's texts replaced before any model sees them.

Each task that reads free text says which texts are redacted (a text classifier's texts, a
chat project's messages, a knowledge base's labelled questions) with a :data:`Rewrite`; the
redaction itself (the project's ``privacy:`` detector and operator) and what it records are
the same for all. The record (operator and count per entity) goes into the data fingerprint,
so every version trained on redacted data says so in its manifest and model card.

Every split is redacted, test included: a model trained on ``<PERSON>`` is measured on text
written the same way.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from forgeline.config.load import Project
from forgeline.errors import ConfigError
from forgeline.privacy.detector import PiiDetector
from forgeline.privacy.keys import load_privacy_key
from forgeline.privacy.operators import Redactor
from forgeline.tasks.base import DataSplits


class TextRedaction:
    """Redacts texts with the project's privacy settings and counts what it replaced."""

    def __init__(self, project: Project) -> None:
        privacy = project.config.privacy
        self.operator = privacy.operator
        if self.operator == "encrypt":
            raise ConfigError(
                "data.redact: privacy.operator is encrypt, which writes each value as a new "
                "random token that no model can learn from; use replace, mask or pseudonymize"
            )
        key = None
        if self.operator == "pseudonymize":
            key = load_privacy_key(privacy, "data.redact with pseudonymize", root=project.root)
        detector = PiiDetector.from_config(privacy, project.registry_dir)
        self._redactor = Redactor(detector, self.operator, key, privacy.mask)
        self.found: Counter[str] = Counter()

    def texts(self, texts: Sequence[str]) -> list[str]:
        redactions = self._redactor.redact(texts)
        self.found.update(span.entity_type for r in redactions for span in r.spans)
        return [redaction.text for redaction in redactions]

    def record(self) -> dict[str, Any]:
        return {"operator": self.operator, "entities": dict(sorted(self.found.items()))}


Rewrite = Callable[[pd.DataFrame, TextRedaction], pd.DataFrame]
"""A split with its texts redacted (a new frame; the one given is left as it is)."""


def column_rewrite(column: str) -> Rewrite:
    """Redacts one column of texts."""

    def rewrite(frame: pd.DataFrame, redaction: TextRedaction) -> pd.DataFrame:
        return frame.assign(**{column: redaction.texts(list(frame[column]))})

    return rewrite


def redacted(data: DataSplits, project: Project, rewrite: Rewrite) -> DataSplits:
    """``data`` with every split's texts redacted, the record in its fingerprint and a notice
    of what was replaced among its warnings."""
    redaction = TextRedaction(project)
    frames = {
        name: rewrite(getattr(data, name), redaction) for name in ("train", "validation", "test")
    }
    found = redaction.found
    summary = ", ".join(f"{entity} {count}" for entity, count in sorted(found.items())) or "none"
    notice = (
        f"data.redact: {found.total()} pieces of personal data replaced ({redaction.operator}) "
        f"before training: {summary}"
    )
    return DataSplits(
        **frames,
        fingerprint={**data.fingerprint, "redaction": redaction.record()},
        warnings=[*data.warnings, notice],
    )
