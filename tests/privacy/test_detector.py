"""The detector as the ``privacy:`` config sets it up: entities, thresholds, languages, clear
errors, overlaps settled, and a token-classification model of the registry for names."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from forgeline.config.load import load_project
from forgeline.config.privacy import PrivacyConfig
from forgeline.errors import ConfigError
from forgeline.privacy import PiiDetector, Span
from forgeline.privacy.detector import without_overlaps
from forgeline.privacy.ner import NerModelEntities, presidio_entity
from forgeline.registry import ModelRegistry
from forgeline.tasks.base import Task
from forgeline.tasks.text_classification import TextClassifier
from forgeline.tasks.token_classification import TokenClassifier
from tests.conftest import MINIMAL_YAML, write_project

TEXT = "Call +44 20 7946 0958 or 电话13812345678, card 4111 1111 1111 1111, SSN 460-89-9847"


def kinds(detector: PiiDetector, text: str) -> list[str]:
    return [span.entity_type for span in detector.detect([text])[0]]


def test_listed_entities_only_and_thresholds_global_and_per_entity() -> None:
    assert kinds(PiiDetector(PrivacyConfig()), TEXT) == [
        "PHONE_NUMBER",
        "PHONE_NUMBER",
        "CREDIT_CARD",
        "US_SSN",
    ]
    cards_only = PiiDetector(PrivacyConfig(entities=["CREDIT_CARD"]))
    assert cards_only.entities == ["CREDIT_CARD"] and kinds(cards_only, TEXT) == ["CREDIT_CARD"]
    # The shape-only phone pattern scores 0.5, the mainland mobile 0.6, a Luhn-valid card 1.
    strict_phones = PiiDetector(PrivacyConfig(entity_thresholds={"PHONE_NUMBER": 0.55}))
    assert kinds(strict_phones, TEXT) == ["PHONE_NUMBER", "CREDIT_CARD", "US_SSN"]
    strict = PiiDetector(PrivacyConfig(score_threshold=0.9))
    assert kinds(strict, TEXT) == ["CREDIT_CARD"]


def test_languages_choose_whose_identifiers_are_looked_for() -> None:
    chinese = PiiDetector(PrivacyConfig(languages=["zh"]))
    assert "US_SSN" not in chinese.entities and "CN_RESIDENT_ID" in chinese.entities
    assert kinds(chinese, "SSN 460-89-9847") == []
    with pytest.raises(ConfigError, match=r"nothing finds US_SSN with languages zh"):
        PiiDetector(PrivacyConfig(languages=["zh"], entities=["US_SSN"]))
    english = PiiDetector(PrivacyConfig(languages=["en"]))
    assert "CN_RESIDENT_ID" not in english.entities
    assert kinds(english, "编号13812345678") == []  # 11 digits unbroken, no phone word


def test_names_without_a_model_is_a_config_error_that_says_what_is_missing() -> None:
    with pytest.raises(ConfigError) as error:
        PiiDetector(PrivacyConfig(entities=["PERSON", "CREDIT_CARD"]))
    assert "nothing finds PERSON" in str(error.value)
    assert "need privacy.ner_model" in str(error.value)
    with pytest.raises(ConfigError, match=r"privacy\.ner_model needs a project"):
        PiiDetector.from_config(PrivacyConfig(ner_model="pii-names"), None)


def test_config_errors_name_the_privacy_field(tmp_path: Path, labelled_csv: str) -> None:
    privacy = "privacy:\n  entities: [person]\n  entity_thresholds: {PHONE_NUMBER: 2}\n"
    config = write_project(tmp_path, MINIMAL_YAML + privacy, {"data/train.csv": labelled_csv})
    with pytest.raises(ConfigError) as error:
        load_project(config)
    message = str(error.value)
    assert "privacy.entities: entities: 'person' is not an entity name" in message
    assert "privacy.entity_thresholds" in message and "between 0 and 1" in message


def test_overlaps_keep_the_stronger_span_whole_and_the_weaker_outside_it() -> None:
    text = "2000-04-16 11:34:35 and 4111 1111 1111 1111 and +44 20 7946 0958"
    spans = [
        Span(0, 10, "DATE_TIME", 0.6),
        Span(0, 19, "PHONE_NUMBER", 0.5),  # keeps the time past the date
        Span(24, 43, "CREDIT_CARD", 1.0),
        Span(22, 43, "PHONE_NUMBER", 0.5),  # "d " before the card: too little to keep
        Span(48, 54, "PHONE_NUMBER", 0.5),  # overlaps the next of its type: merged
        Span(52, 64, "PHONE_NUMBER", 0.5),
    ]
    settled = without_overlaps(spans, text)
    assert [(s.entity_type, text[s.start : s.end]) for s in settled] == [
        ("DATE_TIME", "2000-04-16"),
        ("PHONE_NUMBER", " 11:34:35"),
        ("CREDIT_CARD", "4111 1111 1111 1111"),
        ("PHONE_NUMBER", "+44 20 7946 0958"),
    ]
    assert all(a.end <= b.start for a, b in itertools.pairwise(settled))
    assert without_overlaps([Span(1, 3, "PERSON", 0.9)], "致李娜") == [Span(1, 3, "PERSON", 0.9)]


def test_model_types_map_to_presidio_entities() -> None:
    assert presidio_entity("person", {}) == "PERSON"
    assert presidio_entity("B-city", {}) == "B_CITY"
    assert presidio_entity("GPE", {}) == "LOCATION"
    assert presidio_entity("corporation", {}) == "ORGANIZATION"
    assert presidio_entity("order-id", {}) == "ORDER_ID"
    assert presidio_entity("venue", {"venue": "LOCATION"}) == "LOCATION"


def _publish(registry: ModelRegistry, name: str, model: Task) -> None:
    registry.publish(
        name,
        model,
        config={},
        data_fingerprint={"sha256": "0" * 64, "files": {}},
        base_model="minilm-l6",
    )


class CountingTagger:
    """The real tagger, counting how many times it is asked (batching is the point)."""

    def __init__(self, model: TokenClassifier) -> None:
        self.model = model
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def predict(self, inputs: Sequence[Any]) -> list[dict[str, Any]]:
        self.calls += 1
        return self.model.predict(inputs)


def test_a_registry_tagger_finds_names_in_batches(
    tmp_path: Path, untrained_tagger: TokenClassifier
) -> None:
    registry = ModelRegistry(tmp_path / "models")
    _publish(registry, "names", untrained_tagger)
    detector = PiiDetector.from_config(PrivacyConfig(ner_model="names"), registry.root)
    assert {"PERSON", "LOCATION"} <= set(detector.entities)  # the tagger's person and city

    texts = ["Maria Lopez moved to Porto last May", "card 4111 1111 1111 1111"] * 3
    counting = CountingTagger(untrained_tagger)
    entities = NerModelEntities(counting, untrained_tagger.labels, {})
    # A fresh head is unsure of everything: take all it finds, whatever its score.
    config = PrivacyConfig(entities=["PERSON", "LOCATION", "CREDIT_CARD"], score_threshold=0)
    batched = PiiDetector(config, entities)
    found = batched.detect(texts)
    assert counting.calls == 1  # six texts (two distinct), one forward pass

    # What the detector reports is what the model predicts, its types renamed.
    expected = [
        (e["start"], e["end"], {"person": "PERSON", "city": "LOCATION"}[e["type"]])
        for e in untrained_tagger.predict([texts[0]])[0]["entities"]
    ]
    assert expected, "a fresh head tags something in a sentence"
    assert [(s.start, s.end, s.entity_type) for s in found[0]] == expected
    assert found[0] == found[2]
    assert "CREDIT_CARD" in [s.entity_type for s in found[1]]


def test_ner_model_must_be_a_token_classifier(
    tmp_path: Path, untrained_classifier: TextClassifier
) -> None:
    registry = ModelRegistry(tmp_path / "models")
    _publish(registry, "intents", untrained_classifier)
    with pytest.raises(ConfigError, match="'intents' is a text-classification model"):
        PiiDetector.from_config(PrivacyConfig(ner_model="intents"), registry.root)
