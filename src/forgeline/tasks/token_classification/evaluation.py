"""Entity-level evaluation of a token classifier: strict IOB2 precision, recall and F1 per type
(seqeval), token accuracy, which mistakes are boundaries and which are types, and example
texts with gold and predicted entities marked.

Gold and predicted entities are compared on the data's own units: a token-per-line file's
tokens, or the model's words for texts with character spans.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd
from seqeval.metrics import classification_report, f1_score
from seqeval.scheme import IOB2

from forgeline.tasks.base import Evaluation, MarkedText, ReportSection
from forgeline.tasks.token_classification.data import ENTITIES, TEXT, WORDS
from forgeline.tasks.token_classification.formats import Entity, spans_from_iob2
from forgeline.tasks.token_classification.tagging import OUTSIDE, FoundEntity, tags_for_spans

if TYPE_CHECKING:
    from forgeline.tasks.token_classification.model import TokenClassifier

NONE = "(none)"
EXAMPLES = 20


@dataclass(frozen=True)
class Tagged:
    """Gold and predicted IOB2 tags of each text's units, and the entities predicted."""

    gold: list[list[str]]
    predicted: list[list[str]]
    found: list[list[FoundEntity]]


def tag_frame(model: TokenClassifier, frame: pd.DataFrame) -> Tagged:
    texts = list(frame[TEXT])
    own_words, found = model.words_and_entities(texts)
    gold, predicted = [], []
    for words, entities, units_given, guessed in zip(
        own_words, frame[ENTITIES], frame[WORDS], found, strict=True
    ):
        units = list(units_given) if units_given is not None else words
        as_entities = [Entity(f.start, f.end, f.type) for f in guessed]
        gold.append(tags_for_spans(units, entities))
        predicted.append(tags_for_spans(units, as_entities))
    return Tagged(gold, predicted, found)


def entity_f1(model: TokenClassifier, frame: pd.DataFrame) -> float:
    """Micro entity F1 (strict IOB2) of the model on ``frame``."""
    tagged = tag_frame(model, frame)
    return float(
        f1_score(tagged.gold, tagged.predicted, mode="strict", scheme=IOB2, zero_division=0)
    )


def error_kinds(
    gold: list[str], predicted: list[str]
) -> tuple[Counter[str], list[tuple[str, str]]]:
    """Per gold entity, what became of it: correct, type error, boundary error, boundary and
    type error, or missed; and the predicted entities that overlap no gold one, spurious.
    Pairs of (gold type, predicted type) go to the confusion table (``(none)`` for a missed or
    spurious entity).

    A gold entity is judged by the prediction that overlaps it most, so every gold entity is
    counted once, also when one prediction merges two of them."""
    gold_spans, predicted_spans = spans_from_iob2(gold), spans_from_iob2(predicted)
    kinds: Counter[str] = Counter()
    pairs: list[tuple[str, str]] = []
    for g_start, g_end, g_label in gold_spans:
        overlaps = [
            (min(end, g_end) - max(start, g_start), (start, end, label))
            for start, end, label in predicted_spans
            if start < g_end and g_start < end
        ]
        if not overlaps:
            kinds["missed"] += 1
            pairs.append((g_label, NONE))
            continue
        start, end, label = max(overlaps)[1]
        same_type, same_bounds = label == g_label, (start, end) == (g_start, g_end)
        if same_bounds:
            kinds["correct" if same_type else "type error"] += 1
        else:
            kinds["boundary error" if same_type else "boundary and type error"] += 1
        pairs.append((g_label, label))
    for start, end, label in predicted_spans:
        if not any(s < end and start < e for s, e, _ in gold_spans):
            kinds["spurious"] += 1
            pairs.append((NONE, label))
    return kinds, pairs


def _per_type_table(report: dict[str, Any], tagged: Tagged) -> pd.DataFrame:
    """seqeval's scores per type, with the counts behind them (so that scores over any group
    of types can be computed from the metrics file)."""
    predicted: Counter[str] = Counter()
    correct: Counter[str] = Counter()
    for gold, guess in zip(tagged.gold, tagged.predicted, strict=True):
        gold_spans = set(spans_from_iob2(gold))
        for span in spans_from_iob2(guess):
            predicted[span[2]] += 1
            correct[span[2]] += span in gold_spans
    rows = [
        {
            "type": name,
            "precision": float(scores["precision"]),
            "recall": float(scores["recall"]),
            "f1": float(scores["f1-score"]),
            "support": int(scores["support"]),
            "predicted": predicted[name],
            "correct": correct[name],
        }
        for name, scores in report.items()
    ]
    columns = ["type", "precision", "recall", "f1", "support", "predicted", "correct"]
    return pd.DataFrame(rows, columns=columns)


def evaluate_token_classifier(model: TokenClassifier, data: pd.DataFrame) -> Evaluation:
    tagged = tag_frame(model, data)
    # seqeval averages over no entity at all to NaN (with numpy warnings): nothing to report.
    any_entity = any(
        t != OUTSIDE for rows in (tagged.gold, tagged.predicted) for r in rows for t in r
    )
    report: dict[str, Any] = (
        classification_report(
            tagged.gold,
            tagged.predicted,
            mode="strict",
            scheme=IOB2,
            output_dict=True,
            zero_division=0,
        )
        if any_entity
        else {}
    )
    averages = {k: report.pop(k) for k in ("micro avg", "macro avg", "weighted avg") if k in report}
    units = sum(len(tags) for tags in tagged.gold)
    token_accuracy = (
        sum(
            g == p
            for gold, guess in zip(tagged.gold, tagged.predicted, strict=True)
            for g, p in zip(gold, guess, strict=True)
        )
        / units
        if units
        else 0.0
    )
    kinds: Counter[str] = Counter()
    pairs: Counter[tuple[str, str]] = Counter()
    for gold, guess in zip(tagged.gold, tagged.predicted, strict=True):
        counted, paired = error_kinds(gold, guess)
        kinds.update(counted)
        pairs.update(paired)
    micro = averages.get("micro avg", {"precision": 0.0, "recall": 0.0, "f1-score": 0.0})
    macro = averages.get("macro avg", {"f1-score": 0.0})
    per_type = _per_type_table(report, tagged)
    metrics: dict[str, Any] = {
        "examples": len(data),
        "entity_precision": float(micro["precision"]),
        "entity_recall": float(micro["recall"]),
        "entity_f1": float(micro["f1-score"]),
        "entity_macro_f1": float(macro["f1-score"]),
        "token_accuracy": float(token_accuracy),
        "per_type": {
            row["type"]: {k: v for k, v in row.items() if k != "type"}
            for row in per_type.to_dict("records")
        },
        "errors": dict(kinds),
    }
    summary = [
        ("examples", str(len(data))),
        ("entity F1 (micro)", f"{metrics['entity_f1']:.4f}"),
        ("entity F1 (macro)", f"{metrics['entity_macro_f1']:.4f}"),
        ("precision", f"{metrics['entity_precision']:.4f}"),
        ("recall", f"{metrics['entity_recall']:.4f}"),
        ("token accuracy", f"{token_accuracy:.4f}"),
    ]
    types = [*sorted(({g for g, _ in pairs} | {p for _, p in pairs}) - {NONE}), NONE]
    confusion = pd.DataFrame(
        [[pairs.get((g, p), 0) for p in types] for g in types],
        columns=[f"predicted {t}" for t in types],
    )
    confusion.insert(0, "gold", types)
    error_table = pd.DataFrame(
        [
            {"kind": kind, "entities": kinds.get(kind, 0)}
            for kind in (
                "correct",
                "boundary error",
                "type error",
                "boundary and type error",
                "missed",
                "spurious",
            )
        ]
    )
    sections = [
        ReportSection(
            title="Per entity type",
            paragraphs=[
                "Strict entity-level scores (seqeval, IOB2): an entity counts only with its exact "
                "boundaries and type."
            ],
            tables=[per_type.sort_values("f1")],
        ),
        ReportSection(
            title="Kinds of mistakes",
            paragraphs=[
                "Predicted entities that overlap a gold entity with other boundaries are "
                "boundary errors; with the same boundaries and another type, type errors."
            ],
            tables=[error_table],
        ),
        ReportSection(
            title="Type confusions",
            paragraphs=[
                "Overlapping gold and predicted entities by type; (none) counts missed "
                "(gold row) and spurious (gold (none)) entities."
            ],
            tables=[confusion],
        ),
        ReportSection(
            title="Examples with mistakes",
            paragraphs=["Gold entities first, then what the model found."],
            marked_texts=_examples(data, tagged),
        ),
    ]
    return Evaluation(metrics=metrics, summary=summary, sections=sections)


def _examples(data: pd.DataFrame, tagged: Tagged) -> list[MarkedText]:
    marked: list[MarkedText] = []
    for text, entities, gold, guess, found in zip(
        data[TEXT], data[ENTITIES], tagged.gold, tagged.predicted, tagged.found, strict=True
    ):
        if gold == guess:
            continue
        marked.append(MarkedText("gold", text, [(e.start, e.end, e.label) for e in entities]))
        marked.append(MarkedText("predicted", text, [(f.start, f.end, f.type) for f in found]))
        if len(marked) >= 2 * EXAMPLES:
            break
    return marked
