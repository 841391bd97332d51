"""The ``privacy:`` section of ``forgeline.yaml``: which personal data `forgeline redact` finds
(and how sure it must be), with which model for names and places, and how it is replaced.

The key that pseudonymizes and encrypts is never written here: it comes from an environment
variable or a key file (see :mod:`forgeline.privacy.keys`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from forgeline.config.sections import NAME_PATTERN, Section

ENTITY_PATTERN = r"^[A-Z][A-Z0-9_]*$"
"""Entity names as Presidio writes them: PERSON, PHONE_NUMBER, CN_RESIDENT_ID."""

OperatorName = Literal["mask", "replace", "pseudonymize", "encrypt"]
Language = Literal["en", "zh"]
_BOTH_LANGUAGES: list[Language] = ["en", "zh"]


def _check_entity(name: str, where: str) -> str:
    if re.fullmatch(ENTITY_PATTERN, name) is None:
        raise ValueError(
            f"{where}: '{name}' is not an entity name; write it as Presidio does, in capitals "
            "(e.g. PERSON, PHONE_NUMBER)"
        )
    return name


def _check_threshold(score: float, where: str) -> float:
    if not 0 <= score <= 1:
        raise ValueError(f"{where}: a score threshold is between 0 and 1 (got {score})")
    return score


class MaskConfig(Section):
    """The ``mask`` operator: letters and digits become ``char``; spaces and punctuation stay,
    so a masked card or phone number keeps its shape."""

    char: str = Field("*", min_length=1, max_length=1, description="The masking character.")
    keep_last: dict[str, int] = Field(
        default_factory=lambda: {"CREDIT_CARD": 4},
        description="Per entity, how many of its last letters and digits stay readable "
        "(e.g. the last 4 of a card, as on a receipt).",
    )

    @field_validator("keep_last")
    @classmethod
    def _counts(cls, value: dict[str, int]) -> dict[str, int]:
        for entity, count in value.items():
            _check_entity(entity, "keep_last")
            if count < 0:
                raise ValueError(f"keep_last.{entity}: must be 0 or more (got {count})")
        return value


class PrivacyConfig(Section):
    """Finding personal data (Presidio's pattern and checksum recognizers, Forgeline's for
    Chinese identifiers and long cards, and optionally a token-classification model of this
    project's registry for names, places and organizations) and redacting it."""

    entities: list[str] | None = Field(
        None,
        description="The entities to find. Unset: email, phone, card, IBAN, IP, URL, US SSN, "
        "Chinese resident ID, crypto wallet and dates, plus every type the ner_model finds. "
        "Recognizers prone to false alarms (US_DRIVER_LICENSE, US_BANK_NUMBER, US_PASSPORT, "
        "US_ITIN, MEDICAL_LICENSE, UK_NHS, MAC_ADDRESS, UUID) run only when listed here.",
    )
    score_threshold: float = Field(
        0.4,
        ge=0,
        le=1,
        description="The lowest score of an entity that is redacted (patterns score 0.4 to 1; "
        "checksum-validated ones 1).",
    )
    entity_thresholds: dict[str, float] = Field(
        default_factory=dict,
        description="Per entity, a threshold that replaces score_threshold (e.g. {PERSON: 0.6}).",
    )
    languages: list[Language] = Field(
        default_factory=lambda: _BOTH_LANGUAGES.copy(),
        min_length=1,
        description="Whose identifiers are looked for: en (US SSN, and the US and UK "
        "recognizers listed in entities), zh (resident ID and mainland mobile numbers). Every "
        "text is read with all of them, whatever its own language.",
    )
    ner_model: str | None = Field(
        None,
        pattern=NAME_PATTERN,
        description="A token-classification model in this project's registry (e.g. one "
        "trained as examples/pii-names) that finds names, places and organizations.",
    )
    ner_types: dict[str, str] = Field(
        default_factory=dict,
        description="The model's entity types as Presidio entities where the usual mapping "
        "(person/PER -> PERSON, GPE/LOC/city -> LOCATION, ORG -> ORGANIZATION, address -> "
        "STREET_ADDRESS, others in capitals) does not fit, e.g. {venue: LOCATION}.",
    )
    operator: OperatorName = Field(
        "replace",
        description="How found entities are replaced: mask (****1111), replace (<PERSON>), "
        "pseudonymize (<PERSON_7f3a9c01d2e84b56>, the same for the same value, keyed) or encrypt "
        "(<PERSON:...>, reversible with `forgeline unredact` and the key).",
    )
    key_env: str = Field(
        "FORGELINE_PRIVACY_KEY",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="The environment variable holding the key of pseudonymize and encrypt.",
    )
    key_file: Path | None = Field(
        None,
        description="A file holding the key (relative to this file), read when the "
        "environment variable is not set.",
    )
    mask: MaskConfig = MaskConfig()
    redact_inputs: bool = Field(
        False,
        description="Chat models: the personal data found in a request's messages is replaced "
        "by placeholders (<PERSON_1>) before the model sees it, and the placeholders in the "
        "reply by the values again (streamed replies too). The mapping lives only inside the "
        "request.",
    )

    @field_validator("entities")
    @classmethod
    def _entity_names(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("list at least one entity, or leave entities out for the defaults")
        return [_check_entity(name, "entities") for name in value]

    @field_validator("entity_thresholds")
    @classmethod
    def _thresholds(cls, value: dict[str, float]) -> dict[str, float]:
        for entity, score in value.items():
            _check_threshold(
                score, f"entity_thresholds.{_check_entity(entity, 'entity_thresholds')}"
            )
        return value

    @field_validator("ner_types")
    @classmethod
    def _ner_types(cls, value: dict[str, str]) -> dict[str, str]:
        for model_type, entity in value.items():
            _check_entity(entity, f"ner_types.{model_type}")
        return value

    @field_validator("languages")
    @classmethod
    def _distinct_languages(cls, value: list[Language]) -> list[Language]:
        if len(set(value)) < len(value):
            raise ValueError("list each language once")
        return value

    def threshold(self, entity: str) -> float:
        return self.entity_thresholds.get(entity, self.score_threshold)


class RedactedTexts(Section):
    """A ``data:`` section whose texts can be redacted before training (``data.redact``)."""

    redact: bool = Field(
        False,
        description="Replace the personal data found in the texts (the privacy section says "
        "what is found and how: privacy.operator replace, mask or pseudonymize) before any "
        "model sees them, in training, validation and test alike; the model card records it.",
    )
