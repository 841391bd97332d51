"""``forgeline evaluate`` for chat models: perplexity of the replies of held-out conversations,
and the model's own replies beside the reference ones, in the terminal and report.html."""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING

import pandas as pd

from forgeline.errors import DataError
from forgeline.tasks.base import Evaluation, ReportSection
from forgeline.tasks.chat.data import MESSAGES, SOURCE
from forgeline.tasks.chat.prompting import ChatMessage
from forgeline.tasks.chat.request import Finished, GenerationRequest, TextChunk
from forgeline.tasks.chat.scoring import Scorer

if TYPE_CHECKING:
    from forgeline.tasks.chat.model import ChatModel

SAMPLES = 5
"""Conversations whose last reply the model writes itself, for the report (greedy)."""
SAMPLE_MAX_TOKENS = 128


def evaluate_chat(model: ChatModel, data: pd.DataFrame) -> Evaluation:
    if data.empty:
        raise DataError(
            "no conversations to evaluate on: give data.test (or data.train) in forgeline.yaml"
        )
    conversations = [model.with_system_prompt(list(m)) for m in data[MESSAGES]]
    nll, tokens = 0.0, 0
    per_conversation = []
    with Scorer(
        model.weights, model.engine_settings.context_tokens, model.engine_settings.threads
    ) as scorer:
        for messages, source in zip(conversations, data[SOURCE], strict=True):
            score = scorer.score(messages, source)
            nll += score.negative_log_likelihood
            tokens += score.tokens
            per_conversation.append(math.exp(score.negative_log_likelihood / max(score.tokens, 1)))
    perplexity = math.exp(nll / tokens)
    samples = _sample_replies(model, conversations[:SAMPLES])
    metrics = {
        "perplexity": perplexity,
        "mean_reply_nll": nll / tokens,
        "reply_tokens": tokens,
        "conversations": len(conversations),
    }
    table = pd.DataFrame(
        {
            "conversation": list(data[SOURCE][:SAMPLES]),
            "last user message": [_last(m, "user") for m in conversations[:SAMPLES]],
            "reference reply": [_last(m, "assistant") for m in conversations[:SAMPLES]],
            "model's reply": samples,
        }
    )
    worst = pd.DataFrame({"conversation": list(data[SOURCE]), "perplexity": per_conversation})
    worst = worst.sort_values("perplexity", ascending=False).head(10)
    return Evaluation(
        metrics=metrics,
        summary=[
            ("perplexity", f"{perplexity:.3f}"),
            ("reply tokens", str(tokens)),
            ("conversations", str(len(conversations))),
        ],
        sections=[
            ReportSection(
                "Perplexity",
                [
                    f"Perplexity {perplexity:.3f} over {tokens} reply tokens of "
                    f"{len(conversations)} held-out conversations: exp of the mean negative "
                    "log-likelihood of each assistant reply given the conversation before it "
                    "(the model's chat template and system prompt applied). Lower is better.",
                ],
                [worst],
            ),
            ReportSection(
                "Sample replies",
                [
                    f"The model's own reply (greedy, at most {SAMPLE_MAX_TOKENS} tokens) to the "
                    f"last user message of the first {len(samples)} conversations."
                ],
                [table],
            ),
        ],
    )


def _last(messages: list[ChatMessage], role: str) -> str:
    return next((m["content"] for m in reversed(messages) if m["role"] == role), "")


def _sample_replies(model: ChatModel, conversations: list[list[ChatMessage]]) -> list[str]:
    """The model's replies in place of each conversation's last one, generated together."""
    engine = model.engine()

    async def reply(messages: list[ChatMessage]) -> str:
        last_reply = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        prompt = engine.chat_prompt(messages[:last_reply])
        request = GenerationRequest(
            prompt, max_tokens=SAMPLE_MAX_TOKENS, temperature=0, stop=model.generation.stop
        )
        parts: list[str] = []
        async with engine.submit(request) as stream:
            async for event in stream:
                if isinstance(event, TextChunk):
                    parts.append(event.text)
                elif isinstance(event, Finished):
                    break
        return "".join(parts).strip()

    async def everything() -> list[str]:
        return list(await asyncio.gather(*(reply(m) for m in conversations)))

    try:
        return asyncio.run(everything())
    finally:
        model.close()
