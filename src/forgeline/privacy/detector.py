"""Finding personal data: Presidio's analyzer, set up from the ``privacy:`` config.

Presidio runs with its no-op NLP engine: no spaCy model is loaded (none can be downloaded here,
and pattern and checksum recognizers need none). A blank spaCy pipeline would give Presidio
tokens to raise scores by context words ("phone", "card"). Measured on the labelled PII data's
test split with Presidio's default recognizers, it changed nothing at thresholds 0.3 and 0.4
(F2 0.144 either way; at 0.5 it kept 3 of 19 phone numbers the no-op engine dropped) and took
1.6 to 1.8 times as long. So the no-op engine it is, and Forgeline's recognizers are scored to
stand without context (the phone pattern writes its context words into the regex).

Spans that overlap are settled here, so what :meth:`PiiDetector.detect` returns is what is
redacted: spans of one type that overlap are merged; of spans of different types the
higher-scored (then longer) one is kept whole and the other keeps the characters outside it
(see :data:`_MIN_PIECE`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from presidio_analyzer import AnalyzerEngine, EntityRecognizer, RecognizerRegistry
from presidio_analyzer import predefined_recognizers as presidio
from presidio_analyzer.nlp_engine import NoOpNlpEngine

from forgeline.config.privacy import PrivacyConfig
from forgeline.errors import ConfigError
from forgeline.privacy.ner import NerModelEntities, NerModelRecognizer
from forgeline.privacy.recognizers import (
    AsciiEmailRecognizer,
    ChineseMobileRecognizer,
    ChineseResidentIdRecognizer,
    PaymentCardRecognizer,
    PhoneNumberRecognizer,
    WebUrlRecognizer,
    normalize_width,
)

RecognizerFactory = Callable[[str], EntityRecognizer]
"""Makes a recognizer registered under a Presidio language code."""


def _presidio(recognizer: Callable[..., EntityRecognizer]) -> RecognizerFactory:
    """One of Presidio's predefined recognizers, for a language."""
    return lambda language: recognizer(supported_language=language)


ANY_LANGUAGE: dict[str, list[RecognizerFactory]] = {
    "EMAIL_ADDRESS": [AsciiEmailRecognizer],
    "PHONE_NUMBER": [PhoneNumberRecognizer],
    "CREDIT_CARD": [PaymentCardRecognizer],
    "IBAN_CODE": [_presidio(presidio.IbanRecognizer)],
    "IP_ADDRESS": [_presidio(presidio.IpRecognizer)],
    "URL": [WebUrlRecognizer],
    "CRYPTO": [_presidio(presidio.CryptoRecognizer)],
    "DATE_TIME": [_presidio(presidio.DateRecognizer)],
}
"""Patterns that read the same in any language, by the entity they find."""

CHINESE: dict[str, list[RecognizerFactory]] = {
    "CN_RESIDENT_ID": [ChineseResidentIdRecognizer],
    "PHONE_NUMBER": [ChineseMobileRecognizer],
}
"""Chinese identifiers (``languages: [zh]``)."""

ENGLISH: dict[str, list[RecognizerFactory]] = {
    "US_SSN": [_presidio(presidio.UsSsnRecognizer)],
}
"""Identifiers of English-speaking countries (``languages: [en]``)."""

ON_REQUEST: dict[str, list[RecognizerFactory]] = {
    "US_DRIVER_LICENSE": [_presidio(presidio.UsLicenseRecognizer)],
    "US_BANK_NUMBER": [_presidio(presidio.UsBankRecognizer)],
    "US_PASSPORT": [_presidio(presidio.UsPassportRecognizer)],
    "US_ITIN": [_presidio(presidio.UsItinRecognizer)],
    "MEDICAL_LICENSE": [_presidio(presidio.MedicalLicenseRecognizer)],
    "UK_NHS": [_presidio(presidio.NhsRecognizer)],
    "MAC_ADDRESS": [_presidio(presidio.MacAddressRecognizer)],
    "UUID": [_presidio(presidio.UuidRecognizer)],
}
"""Presidio's English recognizers that are off unless their entity is listed (with ``en``):
without context words (which need a spaCy model) they flag any run of digits of the right
length. On the labelled PII data's test split, US_DRIVER_LICENSE flagged 28 spans where 3
licences were labelled and US_BANK_NUMBER 31 where none was."""

DEFAULT_ENTITIES = (*ANY_LANGUAGE, *CHINESE, *ENGLISH)
"""What is found when ``privacy.entities`` is not set (those of the configured languages),
with every type of the NER model."""

NER_ENTITIES = ("PERSON", "LOCATION", "ORGANIZATION", "STREET_ADDRESS")


@dataclass(frozen=True)
class Span:
    """A piece of personal data: ``text[start:end]`` is a ``entity_type``."""

    start: int
    end: int
    entity_type: str
    score: float


def recognizer_factories(languages: Sequence[str]) -> dict[str, list[RecognizerFactory]]:
    """By entity, the recognizers of ``languages`` (en, zh) and of any language."""
    tables = [ANY_LANGUAGE]
    tables += [CHINESE] if "zh" in languages else []
    tables += [ENGLISH, ON_REQUEST] if "en" in languages else []
    factories: dict[str, list[RecognizerFactory]] = {}
    for table in tables:
        for entity, makers in table.items():
            factories.setdefault(entity, []).extend(makers)
    return factories


class PiiDetector:
    """Finds personal data in texts. Not thread-safe: use one per thread.

    Every text is read once by the recognizers of every configured language, whatever its
    own language: a Chinese mobile number turns up in English messages and a US SSN in Chinese
    ones, and without context words a recognizer reads any language alike. Presidio's
    language code is then only a name for the set (the first configured language).
    """

    def __init__(self, config: PrivacyConfig, ner: NerModelEntities | None = None) -> None:
        self._config = config
        self._ner = ner
        self._language = config.languages[0]
        factories = recognizer_factories(config.languages)
        findable = set(factories) | set(ner.entities if ner else [])
        requested = list(
            dict.fromkeys(
                config.entities
                or [e for e in (*DEFAULT_ENTITIES, *(ner.entities if ner else [])) if e in findable]
            )
        )
        missing = [entity for entity in requested if entity not in findable]
        if missing:
            hint = ""
            if set(missing) & set(NER_ENTITIES) and ner is None:
                hint = "; names, places, organizations and addresses need privacy.ner_model"
            raise ConfigError(
                f"privacy.entities: nothing finds {', '.join(missing)} with languages "
                f"{', '.join(config.languages)} (known: {', '.join(sorted(findable))}){hint}"
            )
        self._entities = requested
        registry = RecognizerRegistry(supported_languages=[self._language])
        for entity in requested:
            for factory in factories.get(entity, []):
                registry.add_recognizer(factory(self._language))
        if ner is not None:
            registry.add_recognizer(NerModelRecognizer(ner, self._language))
        self._analyzer = AnalyzerEngine(
            registry=registry,
            nlp_engine=NoOpNlpEngine([{"lang_code": self._language, "model_name": "no_op"}]),
            supported_languages=[self._language],
        )

    @classmethod
    def from_config(cls, config: PrivacyConfig, registry_dir: Path | None = None) -> PiiDetector:
        """The detector ``config`` describes; ``registry_dir`` is where ``ner_model`` is."""
        if config.ner_model is None:
            return cls(config)
        if registry_dir is None:
            raise ConfigError("privacy.ner_model needs a project: run inside one, or pass --config")
        return cls(
            config, NerModelEntities.from_registry(registry_dir, config.ner_model, config.ner_types)
        )

    @property
    def entities(self) -> list[str]:
        """The entities this detector looks for."""
        return list(self._entities)

    def detect(self, texts: Sequence[str]) -> list[list[Span]]:
        """Per text, its personal data at or above the configured thresholds, sorted by start,
        never overlapping; offsets are those of the text as given."""
        normalized = [normalize_width(text) for text in texts]
        if self._ner is None:
            return [self._detect_one(text) for text in normalized]
        with self._ner.prefetched(normalized):
            return [self._detect_one(text) for text in normalized]

    def _detect_one(self, text: str) -> list[Span]:
        if not text.strip():
            return []
        results = self._analyzer.analyze(text, language=self._language, entities=self._entities)
        spans = [
            Span(r.start, r.end, r.entity_type, float(r.score))
            for r in results
            if r.score >= self._config.threshold(r.entity_type) and r.start < r.end
        ]
        return without_overlaps(spans, text)


def _merged_by_type(spans: list[Span]) -> list[Span]:
    merged: list[Span] = []
    for span in sorted(spans, key=lambda s: (s.entity_type, s.start, s.end)):
        last = merged[-1] if merged else None
        if last is not None and last.entity_type == span.entity_type and span.start < last.end:
            merged[-1] = Span(
                last.start, max(last.end, span.end), last.entity_type, max(last.score, span.score)
            )
        else:
            merged.append(span)
    return merged


_MIN_PIECE = 3
"""Letters and digits that what is left of a trimmed span must have to stay: what a weaker
span adds beyond a stronger one is mostly its overreach (the " 11" a phone pattern took past a
date), and a piece of two characters identifies no one. Spans not trimmed stay whatever their
length (an age, a two-character Chinese name)."""


def without_overlaps(spans: list[Span], text: str) -> list[Span]:
    """``spans`` with overlaps settled (see the module's docstring), sorted by start."""
    kept: list[Span] = []
    for span in sorted(_merged_by_type(spans), key=lambda s: (-s.score, s.start - s.end, s.start)):
        pieces = [(span.start, span.end)]
        for other in kept:
            pieces = [
                piece
                for start, end in pieces
                for piece in ((start, min(end, other.start)), (max(start, other.end), end))
                if piece[0] < piece[1]
            ]
        if pieces != [(span.start, span.end)]:
            pieces = [
                (start, end)
                for start, end in pieces
                if sum(char.isalnum() for char in text[start:end]) >= _MIN_PIECE
            ]
        kept.extend(Span(start, end, span.entity_type, span.score) for start, end in pieces)
    return sorted(kept, key=lambda s: s.start)
