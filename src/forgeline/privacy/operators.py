"""Replacing found personal data: mask, replace, pseudonymize or encrypt.

Redaction runs through presidio-anonymizer's AnonymizerEngine, which keeps the offsets right
as replacements change the text's length and joins same-type entities separated only by
spaces ("Maria" "Lopez" become one name); mask, pseudonymize and encrypt are operators of our
own registered with it.

- ``mask``: letters and digits become ``*`` (the last few kept for the entities configured,
  at most half of them), spaces and punctuation stay: ``**** **** **** 1111``.
- ``replace``: the entity's type, ``<PERSON>`` (Presidio's own operator).
- ``pseudonymize``: ``<PERSON_7f3a9c01d2e84b56>``, the same for the same value (see :mod:`.tokens`).
- ``encrypt``: ``<PERSON:...>``, which :func:`forgeline.privacy.tokens.unredact` restores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from presidio_anonymizer import AnonymizerEngine
from presidio_anonymizer.entities import OperatorConfig, RecognizerResult
from presidio_anonymizer.operators import Operator, OperatorType

from forgeline.config.privacy import MaskConfig, OperatorName
from forgeline.privacy.detector import PiiDetector, Span
from forgeline.privacy.keys import KEYED_OPERATORS, PrivacyKey, PrivacyKeyError
from forgeline.privacy.tokens import encrypted_token, pseudonym


def mask_value(value: str, char: str, keep_last: int) -> str:
    """``value`` with letters and digits masked, the last ``keep_last`` of them kept unless
    that would show more than half of them."""
    positions = [i for i, c in enumerate(value) if c.isalnum()]
    kept = set(positions[len(positions) - min(keep_last, len(positions) // 2) :])
    return "".join(c if not c.isalnum() or i in kept else char for i, c in enumerate(value))


class _AnonymizeOperator(Operator):
    """What our operators share: Presidio's interface, with the entity type in ``params``."""

    NAME = ""

    def operator_name(self) -> str:
        return self.NAME

    def operator_type(self) -> OperatorType:
        return OperatorType.Anonymize

    def validate(self, params: dict[str, Any] | None = None) -> None:
        """Parameters are built by :class:`Redactor`, never by a user."""


class MaskOperator(_AnonymizeOperator):
    NAME = "forgeline_mask"

    def operate(self, text: str, params: dict[str, Any] | None = None) -> str:
        assert params is not None
        return mask_value(text, params["char"], params["keep_last"])


class PseudonymizeOperator(_AnonymizeOperator):
    NAME = "forgeline_pseudonymize"

    def operate(self, text: str, params: dict[str, Any] | None = None) -> str:
        assert params is not None
        return pseudonym(text, params["entity_type"], params["key"])


class EncryptOperator(_AnonymizeOperator):
    NAME = "forgeline_encrypt"

    def operate(self, text: str, params: dict[str, Any] | None = None) -> str:
        assert params is not None
        return encrypted_token(text, params["entity_type"], params["key"])


@dataclass(frozen=True)
class Redaction:
    """A redacted text and the spans of the original that were replaced."""

    text: str
    spans: list[Span]


class Redactor:
    """Finds personal data with a :class:`PiiDetector` and replaces it with ``operator``."""

    def __init__(
        self,
        detector: PiiDetector,
        operator: OperatorName,
        key: PrivacyKey | None = None,
        mask: MaskConfig | None = None,
    ) -> None:
        if operator in KEYED_OPERATORS and key is None:
            raise PrivacyKeyError(f"{operator} needs the project's privacy key")
        self._detector = detector
        self._engine = AnonymizerEngine()
        for operator_class in (MaskOperator, PseudonymizeOperator, EncryptOperator):
            self._engine.add_anonymizer(operator_class)
        self._operators = self._operator_configs(operator, key, mask or MaskConfig())

    def _operator_configs(
        self, operator: OperatorName, key: PrivacyKey | None, mask: MaskConfig
    ) -> dict[str, OperatorConfig]:
        if operator == "replace":
            return {"DEFAULT": OperatorConfig("replace")}
        if operator == "mask":
            return {
                entity: OperatorConfig(
                    MaskOperator.NAME,
                    {"char": mask.char, "keep_last": mask.keep_last.get(entity, 0)},
                )
                for entity in [*self._detector.entities, "DEFAULT"]
            }
        assert key is not None
        if operator == "pseudonymize":
            return {
                "DEFAULT": OperatorConfig(PseudonymizeOperator.NAME, {"key": key.pseudonym_key})
            }
        return {"DEFAULT": OperatorConfig(EncryptOperator.NAME, {"key": key.cipher_key})}

    def redact(self, texts: Sequence[str]) -> list[Redaction]:
        return [
            Redaction(self._replace(text, spans), spans)
            for text, spans in zip(texts, self._detector.detect(texts), strict=True)
        ]

    def _replace(self, text: str, spans: list[Span]) -> str:
        if not spans:
            return text
        results = [RecognizerResult(s.entity_type, s.start, s.end, s.score) for s in spans]
        return str(self._engine.anonymize(text, results, self._operators).text)
