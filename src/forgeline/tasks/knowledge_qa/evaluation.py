"""How well questions are matched to entries: ranking metrics of the answerable questions,
and the decisions at the threshold (answered precision, coverage, unanswerable questions
caught), with the precision-coverage curve and the worst-matched questions for the report."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from forgeline.evaluate.plots import precision_coverage_png
from forgeline.tasks.base import ChatMessage, Evaluation, ReportSection
from forgeline.tasks.knowledge_qa.data import ENTRY, QUESTION
from forgeline.tasks.knowledge_qa.grounding import cited
from forgeline.tasks.knowledge_qa.retrieval import (
    decision_accuracy,
    gold_positions,
    ranks,
    top_entries,
)
from forgeline.tasks.replies import greedy_replies

if TYPE_CHECKING:
    from forgeline.tasks.knowledge_qa.model import KnowledgeQA

RECALL_AT = (1, 3, 10)
WORST_SHOWN = 15
WORST_COLUMNS = ["question", "right entry", "its rank", "ranked first", "score"]
GENERATED_COLUMNS = ["question", "right entry", "answer", "cites", "right cited"]


def retrieval_metrics(
    scores: NDArray[np.float32], gold: Sequence[int | None], threshold: float
) -> dict[str, float]:
    """Ranking metrics over the answerable questions, decision metrics over all of them.

    ``answered_precision``: of the questions answered (top score at or above the threshold),
    the share whose top entry is right (an unanswerable one answered is wrong);
    ``coverage``: the share of questions answered; ``no_answer_recall``: the share of
    unanswerable questions that got the fallback.
    """
    top, top_scores = top_entries(scores)
    answerable = np.array([g is not None for g in gold], dtype=bool)
    metrics: dict[str, float] = {"questions": float(len(gold))}
    if answerable.any():
        right = np.array([g for g in gold if g is not None], dtype=np.int64)
        rank = ranks(scores[answerable], right)
        metrics |= {f"recall_at_{k}": float(np.mean(rank < k)) for k in RECALL_AT}
        metrics["mrr"] = float(np.mean(1 / (rank + 1)))
    answered = top_scores >= threshold
    correct = np.array([g is not None and g == t for g, t in zip(gold, top, strict=True)])
    metrics["coverage"] = float(answered.mean()) if len(gold) else 0.0
    metrics["answered_precision"] = float(correct[answered].mean()) if answered.any() else 0.0
    if (~answerable).any():
        metrics["no_answer_recall"] = float((~answered[~answerable]).mean())
    metrics["decision_accuracy"] = decision_accuracy(top, top_scores, list(gold), threshold)
    return metrics


def precision_coverage(
    scores: NDArray[np.float32], gold: Sequence[int | None]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(coverage, answered precision) at every threshold, from answering all to one."""
    top, top_scores = top_entries(scores)
    correct = np.array([g is not None and g == t for g, t in zip(gold, top, strict=True)])
    order = np.argsort(-top_scores, kind="stable")
    answered = np.arange(1, len(order) + 1)
    precision = np.cumsum(correct[order]) / answered
    return answered / len(order), precision


def evaluate_knowledge_model(model: KnowledgeQA, data: pd.DataFrame) -> Evaluation:
    questions = list(data[QUESTION])
    gold = gold_positions(list(data[ENTRY]), model.knowledge.position())
    scores = model.scores(questions)
    threshold = model.settings.threshold
    metrics: dict[str, Any] = retrieval_metrics(scores, gold, threshold)
    metrics["threshold"] = threshold
    summary = [("questions", str(len(questions)))]
    summary += [
        (name, f"{metrics[key]:.4f}")
        for key, name in (
            ("recall_at_1", "recall@1"),
            ("recall_at_3", "recall@3"),
            ("recall_at_10", "recall@10"),
            ("mrr", "MRR"),
            ("answered_precision", "answered precision"),
            ("coverage", "coverage"),
            ("no_answer_recall", "unanswerable questions caught"),
        )
        if key in metrics
    ]
    coverage, precision = precision_coverage(scores, gold)
    sections = [
        ReportSection(
            "Matching questions to entries",
            paragraphs=[
                f"{len(questions)} test questions against {len(model.knowledge)} entries. "
                "Recall@k: the share of answerable questions whose entry is among the top k; "
                "MRR: the mean of 1 / the rank of that entry.",
                f"At the threshold {threshold:.4f} (chosen on the validation questions) "
                f"{metrics['coverage']:.1%} of the questions are answered, "
                f"{metrics['answered_precision']:.1%} of them rightly; the rest get the "
                "fallback.",
            ],
            tables=[
                pd.DataFrame({"metric": [n for n, _ in summary], "value": [v for _, v in summary]})
            ],
            figures_png=[
                precision_coverage_png(
                    coverage, precision, (metrics["coverage"], metrics["answered_precision"])
                )
            ],
        ),
        ReportSection(
            "Worst-matched questions",
            paragraphs=[
                "The answerable questions whose entry ranked lowest, with what ranked first."
            ],
            tables=[_worst(model, questions, gold, scores)],
        ),
    ]
    if "generate" in model.capabilities:
        cited_metrics, cited_section = generated_answers(model, questions, gold, scores)
        metrics |= cited_metrics
        summary.append(("answers citing a right entry", f"{metrics['citing_right_entry']:.4f}"))
        sections.append(cited_section)
    return Evaluation(metrics, summary, sections)


def generated_answers(
    model: KnowledgeQA,
    questions: list[str],
    gold: list[int | None],
    scores: NDArray[np.float32],
) -> tuple[dict[str, float], ReportSection]:
    """The chat model's answers to the answerable questions, and how often they cite the
    right entry: ``citing_right_entry`` over the questions answered (not given the fallback),
    ``citing_any_entry`` likewise, ``generated_share`` of the answerable questions.
    ``scores``: the questions' scores already computed for the retrieval metrics, grounded
    as :meth:`KnowledgeQA.prepare` grounds a served question."""
    entries = model.knowledge.entries
    answerable = [(row, truth) for row, truth in enumerate(gold) if truth is not None]
    asked = [(questions[row], entries[truth].id) for row, truth in answerable]
    prepared = [
        model.ground([ChatMessage(role="user", content=questions[row])], scores[row])
        for row, _ in answerable
    ]
    generating = [i for i, p in enumerate(prepared) if p.reply is None]
    replies = greedy_replies(model, [prepared[i].messages for i in generating])
    rows: list[dict[str, Any]] = []
    for i, reply in zip(generating, replies, strict=True):
        question, right = asked[i]
        found = cited(reply, prepared[i].citations)
        rows.append(
            {
                "question": question,
                "right entry": right,
                "answer": reply,
                "cites": ", ".join(found),
                "right cited": right in found,
            }
        )
    answered = len(rows)
    metrics = {
        "generated_share": answered / len(asked) if asked else 0.0,
        "citing_right_entry": sum(r["right cited"] for r in rows) / answered if answered else 0.0,
        "citing_any_entry": sum(bool(r["cites"]) for r in rows) / answered if answered else 0.0,
    }
    section = ReportSection(
        "Generated answers",
        paragraphs=[
            f"The chat model's answers (greedy) to the {len(asked)} answerable test questions: "
            f"{answered} were generated from the entries that passed the threshold (the rest "
            f"got the fallback). {metrics['citing_right_entry']:.1%} of them cite the right "
            f"entry, {metrics['citing_any_entry']:.1%} cite any entry."
        ],
        tables=[pd.DataFrame(rows[:WORST_SHOWN], columns=GENERATED_COLUMNS)],
    )
    return metrics, section


def _worst(
    model: KnowledgeQA,
    questions: list[str],
    gold: list[int | None],
    scores: NDArray[np.float32],
) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []
    entries = model.knowledge.entries
    answerable = [(row, truth) for row, truth in enumerate(gold) if truth is not None]
    if not answerable:
        return pd.DataFrame(columns=WORST_COLUMNS)
    positions = np.array([row for row, _ in answerable])
    found = ranks(scores[positions], np.array([truth for _, truth in answerable]))
    for (row, truth), rank in zip(answerable, found, strict=True):
        if rank == 0:
            continue
        top = int(scores[row].argmax())
        rows.append(
            {
                "question": questions[row],
                "right entry": f"{entries[truth].id}: {entries[truth].question}",
                "its rank": int(rank) + 1,
                "ranked first": f"{entries[top].id}: {entries[top].question}",
                "score": round(float(scores[row, top]), 4),
            }
        )
    rows.sort(key=lambda r: -int(r["its rank"]))
    return pd.DataFrame(rows[:WORST_SHOWN], columns=WORST_COLUMNS)
