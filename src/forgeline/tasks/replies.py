"""Greedy replies of a generating model to many prompts at once, for evaluation: the same
engine the server runs, fed no more requests at a time than it decodes together."""

from __future__ import annotations

import asyncio

from forgeline.tasks.base import ChatMessage, Generator
from forgeline.tasks.generation import Finished, GenerationRequest, TextChunk


def greedy_replies(model: Generator, prompts: list[list[ChatMessage]]) -> list[str]:
    """The model's greedy (temperature 0) reply to each conversation, as given (already
    prepared: system prompt and context in place), stripped of outer whitespace."""
    engine = model.engine()
    # The rest would only fill the engine's queue, which refuses requests beyond max_queue.
    slots = asyncio.Semaphore(model.engine_settings.parallel)

    async def reply(messages: list[ChatMessage]) -> str:
        async with slots:
            request = GenerationRequest(
                engine.chat_prompt(messages),
                max_tokens=model.generation.max_tokens,
                temperature=0,
                stop=model.generation.stop,
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
        return list(await asyncio.gather(*(reply(m) for m in prompts)))

    return asyncio.run(everything())
