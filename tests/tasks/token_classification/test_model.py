"""A real MiniLM token classifier (fresh head): inputs, the published schemas, save and load."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest

from forgeline.errors import InputError
from forgeline.tasks.token_classification import TokenClassifier
from forgeline.tasks.token_classification.training import tag_names

TEXTS = ["Maria Lopez ordered a kettle in Porto", "x " * 400, "😀"]


@pytest.fixture
def untrained(untrained_tagger: TokenClassifier) -> TokenClassifier:
    return untrained_tagger


def test_predictions_follow_the_published_schema(untrained: TokenClassifier) -> None:
    predictions = untrained.predict(TEXTS)
    assert len(predictions) == len(TEXTS)
    for text, prediction in zip(TEXTS, predictions, strict=True):
        jsonschema.validate(prediction, untrained.prediction_schema())
        for entity in prediction["entities"]:
            assert text[entity["start"] : entity["end"]] == entity["text"]
    jsonschema.validate(TEXTS[0], untrained.input_schema())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(" \t\n", untrained.input_schema())


def test_check_inputs_names_the_bad_input(untrained: TokenClassifier) -> None:
    with pytest.raises(InputError, match=r"inputs\[1\]: empty text"):
        untrained.check_inputs(["fine", "\u3000 "])
    with pytest.raises(InputError, match=r"inputs\[0\]: expected a string, got int"):
        untrained.check_inputs([3])
    with pytest.raises(InputError, match="max_input_chars=10"):
        untrained.check_inputs(["a" * 11], max_input_chars=10)


def test_min_score_drops_entities_below_it(untrained: TokenClassifier) -> None:
    everything = untrained.find_entities(TEXTS[:1])[0]
    assert everything, "a fresh head tags something in a sentence"
    strict = TokenClassifier(
        untrained.encoder, untrained.tokenizer, tag_names(["city", "person"]), 64, 16,
        {"city": 1.0, "person": 1.0},
    )  # fmt: skip
    assert strict.find_entities(TEXTS[:1]) == [[]]


def test_save_and_load_give_the_same_predictions(
    untrained: TokenClassifier, tmp_path: Path
) -> None:
    untrained.save(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    assert not list(tmp_path.glob("*.bin"))
    loaded = TokenClassifier.load(tmp_path)
    assert loaded.labels == ["city", "person"]
    assert loaded.predict(TEXTS) == untrained.predict(TEXTS)
