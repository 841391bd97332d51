"""Entity-level scores against a hand computation, mistakes sorted by kind, and the report's
highlighted examples."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pytest

from forgeline.evaluate.report import write_report
from forgeline.tasks.token_classification.evaluation import error_kinds, evaluate_token_classifier
from forgeline.tasks.token_classification.formats import Entity
from forgeline.tasks.token_classification.tagging import FoundEntity

TEXTS = ["Ann Lee met Bob in Paris", "Call <Zoe> now"]
WORDS = [
    [(0, 3), (4, 7), (8, 11), (12, 15), (16, 18), (19, 24)],
    [(0, 4), (5, 6), (6, 9), (9, 10), (11, 14)],
]
GOLD = [
    (Entity(0, 7, "person"), Entity(12, 15, "person"), Entity(19, 24, "city")),
    (Entity(6, 9, "person"),),
]
FOUND = [
    # "Ann" alone: a boundary error; "Bob" as an org: a type error; "Paris": correct.
    [FoundEntity("person", 0, 3, 0.9), FoundEntity("org", 12, 15, 0.8), FoundEntity("city", 19, 24, 0.9)],
    # "Zoe" missed; "Call" spurious.
    [FoundEntity("city", 0, 4, 0.6)],
]  # fmt: skip


class FixedTagger:
    """Stands in for the network: the entities it finds are given, so the scores can be
    computed by hand."""

    def __init__(self, found: list[list[FoundEntity]] = FOUND) -> None:
        self._found = found

    def words_and_entities(
        self, texts: Sequence[str]
    ) -> tuple[list[list[tuple[int, int]]], list[list[FoundEntity]]]:
        indexes = [TEXTS.index(t) for t in texts]
        return [WORDS[i] for i in indexes], [self._found[i] for i in indexes]


def _frame(words: list[object]) -> pd.DataFrame:
    return pd.DataFrame({"text": TEXTS, "entities": GOLD, "words": words})


def test_scores_match_a_hand_computation() -> None:
    evaluation = evaluate_token_classifier(FixedTagger(), _frame([None, None]))  # type: ignore[arg-type]
    metrics = evaluation.metrics
    # 4 gold, 4 predicted, 1 exactly right (Paris).
    assert metrics["entity_precision"] == pytest.approx(0.25)
    assert metrics["entity_recall"] == pytest.approx(0.25)
    assert metrics["entity_f1"] == pytest.approx(0.25)
    person, city, org = (metrics["per_type"][t] for t in ("person", "city", "org"))
    assert (person["precision"], person["recall"], person["support"]) == (0, 0, 3)
    assert (city["precision"], city["recall"]) == (0.5, 1.0)
    assert city["f1"] == pytest.approx(2 / 3)
    assert (org["precision"], org["support"]) == (0, 0)
    assert [(t["support"], t["predicted"], t["correct"]) for t in (person, city, org)] == [
        (3, 1, 0),
        (1, 2, 1),
        (0, 1, 0),
    ]
    assert metrics["entity_macro_f1"] == pytest.approx((0 + 2 / 3 + 0) / 3)
    # Words: 4 of 6 tags right in the first text, 3 of 5 in the second.
    assert metrics["token_accuracy"] == pytest.approx(7 / 11)
    assert metrics["errors"] == {
        "correct": 1,
        "boundary error": 1,
        "type error": 1,
        "missed": 1,
        "spurious": 1,
    }


def test_a_files_own_tokens_are_the_units_when_given() -> None:
    # As a token-per-line file would give them: "<Zoe>" is one token, so "Zoe" inside it is
    # found at the token and the second text's person counts as found.
    tokens = [WORDS[0], [(0, 4), (5, 10), (11, 14)]]
    gold = pd.DataFrame(
        {
            "text": TEXTS,
            "entities": [GOLD[0], (Entity(5, 10, "person"),)],
            "words": [tuple(t) for t in tokens],
        }
    )
    tagger = FixedTagger([FOUND[0], [FoundEntity("person", 6, 9, 0.9)]])
    metrics = evaluate_token_classifier(tagger, gold).metrics  # type: ignore[arg-type]
    assert metrics["per_type"]["person"]["recall"] == pytest.approx(1 / 3)


def test_report_marks_entities_and_escapes_the_text(tmp_path: Path) -> None:
    evaluation = evaluate_token_classifier(FixedTagger(), _frame([None, None]))  # type: ignore[arg-type]
    path = tmp_path / "report.html"
    write_report(evaluation, path, title="test")
    page = path.read_text()
    assert "<mark>Paris<sub>city</sub></mark>" in page
    assert "&lt;<mark>Zoe<sub>person</sub></mark>&gt;" in page  # gold, text escaped
    assert "<Zoe>" not in page
    assert "Type confusions" in page and "boundary error" in page


def test_every_gold_entity_is_counted_once_when_a_prediction_merges_two() -> None:
    kinds, pairs = error_kinds(["B-PER", "B-PER", "O"], ["B-PER", "I-PER", "B-LOC"])
    assert kinds == {"boundary error": 2, "spurious": 1}
    assert pairs == [("PER", "PER"), ("PER", "PER"), ("(none)", "LOC")]


def test_a_test_set_without_entities_is_evaluated() -> None:
    frame = pd.DataFrame({"text": [TEXTS[0]], "entities": [()], "words": [None]})
    evaluation = evaluate_token_classifier(FixedTagger([[], []]), frame)  # type: ignore[arg-type]
    assert evaluation.metrics["entity_f1"] == 0.0
    assert evaluation.metrics["entity_macro_f1"] == 0.0  # not NaN: metrics.json stays JSON
    assert evaluation.metrics["per_type"] == {}
