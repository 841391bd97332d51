"""Names, places and organizations from a Forgeline token-classification model, as a Presidio
recognizer: patterns cannot find them, a model fine-tuned on labelled personal data can
(``examples/pii-names`` trains one).

Presidio asks a recognizer about one text at a time; the model is much faster on a batch
(7 ms a text in batches of 32 against 30 ms alone, MiniLM on two busy cores), so
:class:`NerModelEntities` predicts the texts of a batch up front
(:meth:`~NerModelEntities.prefetched`) and the recognizers read the answers from it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from presidio_analyzer import EntityRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts

from forgeline.errors import ConfigError
from forgeline.tasks.base import Prediction, predictor

_USUAL_TYPES = {
    "PER": "PERSON",
    "PERSON": "PERSON",
    "NAME": "PERSON",
    "LOC": "LOCATION",
    "LOCATION": "LOCATION",
    "GPE": "LOCATION",
    "CITY": "LOCATION",
    "COUNTRY": "LOCATION",
    "PLACE": "LOCATION",
    "ORG": "ORGANIZATION",
    "ORGANIZATION": "ORGANIZATION",
    "ORGANISATION": "ORGANIZATION",
    "COMPANY": "ORGANIZATION",
    "CORPORATION": "ORGANIZATION",
    "GROUP": "ORGANIZATION",
    "ADDRESS": "STREET_ADDRESS",
    "STREET_ADDRESS": "STREET_ADDRESS",
}
"""How models usually name the types Presidio calls PERSON, LOCATION, ORGANIZATION and
STREET_ADDRESS (CoNLL's PER/LOC/ORG, OntoNotes' GPE, WNUT's corporation and group, ...)."""


class EntityTagger(Protocol):
    """What is asked of the model: a token classifier's ``predict``."""

    def predict(self, inputs: Sequence[Any]) -> list[Prediction]: ...


BATCH_SIZE = 32
"""Texts per forward pass: large enough to amortise the call, small enough for long texts."""


def presidio_entity(model_type: str, overrides: Mapping[str, str]) -> str:
    """The Presidio entity name of one of the model's types."""
    if model_type in overrides:
        return overrides[model_type]
    name = re.sub(r"[^A-Z0-9]+", "_", model_type.upper()).strip("_") or "ENTITY"
    return _USUAL_TYPES.get(name, name if name[0].isalpha() else f"ENTITY_{name}")


class NerModelEntities:
    """A token-classification model's entities, mapped to Presidio's names, per text."""

    def __init__(
        self, model: EntityTagger, labels: Sequence[str], overrides: Mapping[str, str]
    ) -> None:
        self._model = model
        self._entity_of = {label: presidio_entity(label, overrides) for label in labels}
        self._found: dict[str, list[RecognizerResult]] = {}

    @classmethod
    def from_registry(
        cls, registry_dir: Path, name: str, overrides: Mapping[str, str]
    ) -> NerModelEntities:
        from forgeline.registry import ModelRegistry

        loaded = ModelRegistry(registry_dir).load(name)
        task = loaded.version.manifest["task"]
        if task != "token-classification":
            raise ConfigError(
                f"privacy.ner_model: '{name}' is a {task} model; name a token-classification "
                "model (e.g. one trained as examples/pii-names)"
            )
        return cls(predictor(loaded.model), loaded.model.labels, overrides)

    @property
    def entities(self) -> list[str]:
        return sorted(set(self._entity_of.values()))

    @contextmanager
    def prefetched(self, texts: Sequence[str]) -> Iterator[None]:
        """Within it, the entities of ``texts`` are predicted in batches, not one by one."""
        unique = list(dict.fromkeys(t for t in texts if t.strip()))
        try:
            for first in range(0, len(unique), BATCH_SIZE):
                batch = unique[first : first + BATCH_SIZE]
                for text, found in zip(batch, self._predict(batch), strict=True):
                    self._found[text] = found
            yield
        finally:
            self._found.clear()

    def find(self, text: str) -> list[RecognizerResult]:
        if not text.strip():
            return []
        cached = self._found.get(text)
        return cached if cached is not None else self._predict([text])[0]

    def _predict(self, texts: list[str]) -> list[list[RecognizerResult]]:
        return [
            [self._result(entity) for entity in prediction["entities"]]
            for prediction in self._model.predict(texts)
        ]

    def _result(self, entity: Mapping[str, Any]) -> RecognizerResult:
        return RecognizerResult(
            entity_type=self._entity_of.get(entity["type"], entity["type"]),
            start=int(entity["start"]),
            end=int(entity["end"]),
            score=float(entity["score"]),
        )


class NerModelRecognizer(EntityRecognizer):
    """A Presidio recognizer for one language that answers from :class:`NerModelEntities`."""

    def __init__(self, model_entities: NerModelEntities, supported_language: str) -> None:
        self._model_entities = model_entities
        super().__init__(
            supported_entities=model_entities.entities,
            name="NerModelRecognizer",
            supported_language=supported_language,
        )

    def load(self) -> None:
        """The model is loaded from the registry before the recognizer is made."""

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        wanted = set(entities)
        return [r for r in self._model_entities.find(text) if r.entity_type in wanted]
