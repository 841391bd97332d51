"""Prompts in the model's own format, and grammars that constrain output to JSON."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from llama_cpp import llama_types
from llama_cpp.llama_chat_format import Jinja2ChatFormatter
from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

from forgeline.errors import ConfigError
from forgeline.tasks.base import ChatMessage


class ChatTemplate:
    """Renders messages with the Jinja chat template stored in the model's GGUF metadata.

    llama-cpp-python's :class:`Jinja2ChatFormatter` is used as is: it runs the template in a
    sandbox with the same helpers as Hugging Face's ``apply_chat_template`` (``raise_exception``,
    ``tojson``, ``strftime_now``, the ``{% generation %}`` tag).
    """

    def __init__(self, template: str, *, bos_token: str, eos_token: str) -> None:
        self._formatters = {
            prompt: Jinja2ChatFormatter(
                template=template,
                bos_token=bos_token,
                eos_token=eos_token,
                add_generation_prompt=prompt,
            )
            for prompt in (True, False)
        }

    def render(self, messages: Sequence[ChatMessage], *, add_generation_prompt: bool = True) -> str:
        """The conversation as text: by default ending with the opening of the assistant's
        turn (a prompt), or as it stands (to score replies that are already there)."""
        # The formatter is typed for OpenAI's message unions; ours is the plain-text subset.
        typed = cast(list[llama_types.ChatCompletionRequestMessage], list(messages))
        return self._formatters[add_generation_prompt](messages=typed).prompt


def with_system_prompt(messages: list[ChatMessage], system_prompt: str | None) -> list[ChatMessage]:
    """``messages`` with ``system_prompt`` first, unless they bring their own."""
    if system_prompt is None or (messages and messages[0]["role"] == "system"):
        return messages
    return [ChatMessage(role="system", content=system_prompt), *messages]


def reply_spans(
    template: ChatTemplate, tokenize: Callable[[str], list[int]], messages: Sequence[ChatMessage]
) -> tuple[list[int], list[range]]:
    """The conversation's tokens and, per assistant turn, the positions of its tokens (its
    end-of-turn token included: ending a reply is part of it).

    A turn starts where the conversation before it, rendered as a prompt, ends. Scoring a
    reply (perplexity) and training on it (the loss on reply tokens only) both use this, with
    the tokenizer of their runtime, so the two count the same tokens."""
    tokens = tokenize(template.render(messages, add_generation_prompt=False))
    spans = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = tokenize(template.render(messages[:index]))
        if tokens[: len(prompt)] != prompt:
            # Templates that rewrite earlier turns (e.g. drop a reasoning part) have no fixed
            # place for a reply's tokens; guessing would score or train on the wrong ones.
            raise ConfigError(
                "the model's chat template renders the conversation before an assistant turn "
                "differently from the start of the whole conversation, so the reply's tokens "
                "cannot be located"
            )
        end = len(tokenize(template.render(messages[: index + 1], add_generation_prompt=False)))
        spans.append(range(len(prompt), min(end, len(tokens))))
    return tokens, spans


def json_grammar(schema: Mapping[str, Any] | None = None) -> str:
    """GBNF for any JSON value, or for JSON that follows ``schema`` (a JSON Schema object).

    The conversion is llama-cpp-python's own port of llama.cpp's schema converter, so the
    supported subset of JSON Schema is the same as llama.cpp's server.
    """
    if schema is None:
        return JSON_GBNF
    return str(json_schema_to_gbnf(json.dumps(schema)))
