"""``forgeline evaluate`` for chat models: how likely the model finds the reference replies of
held-out conversations (perplexity), and how close its own greedy replies come to them
(ROUGE-L, exact match, length), in the terminal and report.html.

A fine-tuned model is measured beside the base model it was trained from, in the same run, on
the same conversations, under the same system prompt: the numbers say what fine-tuning bought.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd
from rouge_score.rouge_scorer import RougeScorer

from forgeline.errors import DataError
from forgeline.tasks.base import ChatMessage, Evaluation, ReportSection
from forgeline.tasks.chat.data import MESSAGES, SOURCE
from forgeline.tasks.chat.scoring import Scorer
from forgeline.tasks.replies import greedy_replies

if TYPE_CHECKING:
    from forgeline.tasks.chat.model import ChatModel

SAMPLES = 8
"""Conversations shown in the report with the model's reply beside the reference."""


@dataclass(frozen=True)
class ChatScores:
    perplexity: float
    reply_tokens: int
    perplexity_by_conversation: list[float]
    replies: list[str]
    """The model's greedy reply in place of each conversation's last one."""
    rouge_l: float
    exact_match: float
    reply_words: float

    def metrics(self, prefix: str = "") -> dict[str, float]:
        return {
            f"{prefix}perplexity": self.perplexity,
            f"{prefix}rouge_l": self.rouge_l,
            f"{prefix}exact_match": self.exact_match,
            f"{prefix}mean_reply_words": self.reply_words,
        }


def evaluate_chat(model: ChatModel, data: pd.DataFrame) -> Evaluation:
    if data.empty:
        raise DataError(
            "no conversations to evaluate on: give data.test (or data.train) in forgeline.yaml"
        )
    conversations = [model.with_system_prompt(list(m)) for m in data[MESSAGES]]
    sources = list(data[SOURCE])
    references = [_last(m, "assistant") for m in conversations]
    scores = measure(model, conversations, sources, references)
    base = model.base_version()
    base_scores = measure(base, conversations, sources, references) if base else None
    metrics: dict[str, Any] = {
        **scores.metrics(),
        "reply_tokens": scores.reply_tokens,
        "conversations": len(conversations),
        "mean_reference_words": _mean_words(references),
    }
    summary = _summary(scores)
    if base_scores is not None:
        metrics |= base_scores.metrics("base_")
        metrics["perplexity_ratio_to_base"] = scores.perplexity / base_scores.perplexity
        metrics["rouge_l_gain_over_base"] = scores.rouge_l - base_scores.rouge_l
        summary = [
            (f"{name} (base)", f"{value} ({base_value})")
            for (name, value), (_, base_value) in zip(summary, _summary(base_scores), strict=True)
        ]
    summary.append(("conversations", str(len(conversations))))
    return Evaluation(
        metrics=metrics,
        summary=summary,
        sections=_sections(conversations, sources, references, scores, base_scores),
    )


def measure(
    model: ChatModel,
    conversations: list[list[ChatMessage]],
    sources: list[str],
    references: list[str],
) -> ChatScores:
    """Perplexity of the conversations' replies, and the model's own last replies against
    ``references``."""
    nll, tokens = 0.0, 0
    per_conversation = []
    with Scorer(
        model.weights, model.engine_settings.context_tokens, model.engine_settings.threads
    ) as scorer:
        for messages, source in zip(conversations, sources, strict=True):
            score = scorer.score(messages, source)
            nll += score.negative_log_likelihood
            tokens += score.tokens
            per_conversation.append(math.exp(score.negative_log_likelihood / max(score.tokens, 1)))
    replies = _greedy_replies(model, conversations)
    rouge = RougeScorer(["rougeL"])
    pairs = list(zip(references, replies, strict=True))
    return ChatScores(
        perplexity=math.exp(nll / max(tokens, 1)),
        reply_tokens=tokens,
        perplexity_by_conversation=per_conversation,
        replies=replies,
        rouge_l=sum(rouge.score(ref, reply)["rougeL"].fmeasure for ref, reply in pairs)
        / len(pairs),
        exact_match=sum(_normal(ref) == _normal(reply) for ref, reply in pairs) / len(pairs),
        reply_words=_mean_words(replies),
    )


def _summary(scores: ChatScores) -> list[tuple[str, str]]:
    return [
        ("perplexity", f"{scores.perplexity:.3f}"),
        ("ROUGE-L", f"{scores.rouge_l:.3f}"),
        ("exact match", f"{scores.exact_match:.3f}"),
        ("mean reply words", f"{scores.reply_words:.1f}"),
    ]


def _sections(
    conversations: list[list[ChatMessage]],
    sources: list[str],
    references: list[str],
    scores: ChatScores,
    base: ChatScores | None,
) -> list[ReportSection]:
    rows = ["perplexity", "ROUGE-L", "exact match", "mean reply words"]
    table = pd.DataFrame({"metric": rows, "model": [v for _, v in _summary(scores)]})
    if base is not None:
        table["base model"] = [v for _, v in _summary(base)]
    samples = pd.DataFrame(
        {
            "conversation": sources[:SAMPLES],
            "last user message": [_last(m, "user") for m in conversations[:SAMPLES]],
            "reference reply": references[:SAMPLES],
            "model's reply": scores.replies[:SAMPLES],
        }
    )
    if base is not None:
        samples["base model's reply"] = base.replies[:SAMPLES]
    worst = pd.DataFrame({"conversation": sources, "perplexity": scores.perplexity_by_conversation})
    worst = worst.sort_values("perplexity", ascending=False).head(10)
    compared = " beside the base model it was fine-tuned from" if base is not None else ""
    return [
        ReportSection(
            "Replies",
            [
                f"{len(conversations)} held-out conversations{compared}. Perplexity: exp of the "
                "mean negative log-likelihood of each reference assistant reply given the "
                "conversation before it (the model's chat template and system prompt applied; "
                "lower is better). ROUGE-L (F-measure) and exact match compare the model's own "
                "greedy reply in place of the last one with the reference reply.",
            ],
            [table],
        ),
        ReportSection("Sample replies", [], [samples]),
        ReportSection("Least likely reference replies", [], [worst]),
    ]


def _last(messages: list[ChatMessage], role: str) -> str:
    return next((m["content"] for m in reversed(messages) if m["role"] == role), "")


def _normal(text: str) -> str:
    return " ".join(text.split()).casefold()


def _mean_words(texts: list[str]) -> float:
    return sum(len(text.split()) for text in texts) / max(len(texts), 1)


def _greedy_replies(model: ChatModel, conversations: list[list[ChatMessage]]) -> list[str]:
    """The model's replies in place of each conversation's last one, generated together."""
    prompts = []
    for messages in conversations:
        last_reply = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        prompts.append(messages[:last_reply])
    try:
        return greedy_replies(model, prompts)
    finally:
        model.close()
