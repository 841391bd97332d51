"""`forgeline chat` and `generate` with a model whose config redacts its inputs: the engine
sees placeholders, the terminal the values. The engine is a stand-in that repeats the prompt
in small pieces, so the reply holds the placeholders the model was given, split across
chunks (tests/e2e/test_privacy.py does this with the real model through the server)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

from forgeline.cli.generate import _LocalModel, _reply
from forgeline.config.chat import GenerationConfig
from forgeline.config.privacy import PrivacyConfig
from forgeline.privacy import PiiDetector
from forgeline.tasks.base import ChatMessage, PreparedChat
from forgeline.tasks.generation import Finished, GenerationRequest, TextChunk

EMAIL = "maria.lopez@example.org"
CARD = "4111 1111 1111 1111"


class _EchoStream:
    def __init__(self, text: str) -> None:
        self.text = text

    async def __aenter__(self) -> _EchoStream:
        return self

    async def __aexit__(self, *_: object) -> None:
        return None

    async def __aiter__(self) -> AsyncIterator[TextChunk | Finished]:
        for start in range(0, len(self.text), 3):
            yield TextChunk(self.text[start : start + 3])
        yield Finished(1, 1, "stop", None)


class _EchoEngine:
    def __init__(self) -> None:
        self.prompts: list[str] = []

    def chat_prompt(self, messages: Sequence[ChatMessage]) -> str:
        return messages[-1]["content"]

    def submit(self, request: GenerationRequest) -> _EchoStream:
        assert isinstance(request.prompt, str)
        self.prompts.append(request.prompt)
        return _EchoStream(f"You said: {request.prompt}")


class _EchoModel:
    """The parts of a Generator that `_reply` uses."""

    def __init__(self) -> None:
        self.echo = _EchoEngine()
        self.generation = GenerationConfig(max_tokens=8, temperature=0)

    def prepare(self, messages: list[ChatMessage]) -> PreparedChat:
        return PreparedChat(messages)

    def engine(self) -> _EchoEngine:
        return self.echo

    def close(self) -> None:
        return None


def _run(detector: PiiDetector | None) -> tuple[str, list[str]]:
    model: Any = _EchoModel()
    shown: list[str] = []
    message = ChatMessage(role="user", content=f"mail {EMAIL}, card {CARD}")
    asyncio.run(_reply(_LocalModel(model, detector), [message], shown.append))
    return "".join(shown), model.echo.prompts


def test_a_redacting_model_sees_placeholders_and_the_reply_gets_the_values() -> None:
    reply, prompts = _run(PiiDetector(PrivacyConfig(redact_inputs=True)))
    assert prompts == ["mail <EMAIL_ADDRESS_1>, card <CREDIT_CARD_1>"]
    assert reply == f"You said: mail {EMAIL}, card {CARD}"


def test_without_redaction_the_model_sees_the_text_as_it_is() -> None:
    reply, prompts = _run(None)
    assert prompts == [f"mail {EMAIL}, card {CARD}"]
    assert reply == f"You said: mail {EMAIL}, card {CARD}"
