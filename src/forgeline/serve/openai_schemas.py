"""The request and response shapes of the OpenAI-compatible routes, as OpenAI's API has them.

A parameter Forgeline does not implement is refused with a 400 naming it, never silently
ignored: a client that asks for tools or logprobs must learn it gets none. Parameters at their
neutral value (``presence_penalty: 0``, ``logprobs: false``) are accepted, since clients send
them by default.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from forgeline.config.chat import MAX_STOPS
from forgeline.serve.errors import ApiError
from forgeline.tasks.base import ChatMessage
from forgeline.tasks.generation import MAX_SEED

MAX_CHOICES = 8
MAX_MESSAGES = 256

# Parameters of OpenAI's API that Forgeline does not implement, with the value that means
# "not used" (None: only leaving it out is accepted).
_NEUTRAL: dict[str, Any] = {
    "tools": None,
    "tool_choice": None,
    "functions": None,
    "function_call": None,
    "parallel_tool_calls": None,
    "logprobs": False,
    "top_logprobs": None,
    "logit_bias": {},
    "presence_penalty": 0,
    "frequency_penalty": 0,
    "audio": None,
    "modalities": ["text"],
    "prediction": None,
    "reasoning_effort": None,
    "web_search_options": None,
    "service_tier": None,
    "store": False,
    "metadata": None,
    "echo": False,
    "best_of": 1,
    "suffix": None,
}
_ACCEPTED_AND_UNUSED = frozenset({"user"})
"""Parameters that only label a request for the provider's own records."""


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = Field(None, max_length=64)

    def as_chat(self) -> ChatMessage:
        text = (
            self.content
            if isinstance(self.content, str)
            else "".join(part.text for part in self.content)
        )
        # OpenAI's newer "developer" role is the system prompt of models that lack it.
        role = "system" if self.role == "developer" else self.role
        return ChatMessage(role=role, content=text)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=64)
    description: str | None = None
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None


class TextFormat(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text"]


class JsonObjectFormat(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["json_object"]


class JsonSchemaResponseFormat(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["json_schema"]
    json_schema: JsonSchemaFormat


ResponseFormat = Annotated[
    TextFormat | JsonObjectFormat | JsonSchemaResponseFormat, Field(discriminator="type")
]
Stop = Annotated[
    str | Annotated[list[str], Field(max_length=MAX_STOPS)] | None,
    Field(description=f"Up to {MAX_STOPS} strings that end a reply."),
]


class _Generation(BaseModel):
    """What both routes share. Unknown fields are kept so they can be refused by name (the
    published schema says no other field is accepted)."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"additionalProperties": False})

    model: str = Field(max_length=64)
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int = Field(1, ge=1, le=MAX_CHOICES)
    stream: bool = False
    stream_options: StreamOptions | None = Field(
        None, description="Options of a streamed reply (no effect when stream is false)."
    )
    stop: Stop = None
    seed: int | None = Field(None, ge=0, le=MAX_SEED)
    user: str | None = Field(None, max_length=256)

    @model_validator(mode="after")
    def _nothing_unsupported(self) -> Self:
        for name, value in (self.model_extra or {}).items():
            if name in _NEUTRAL:
                if value is None or value == _NEUTRAL[name]:
                    continue
                raise ApiError(
                    400,
                    "unsupported_parameter",
                    f"'{name}' is not supported by this server (leave it out)",
                    param=name,
                )
            if name not in _ACCEPTED_AND_UNUSED:
                raise ApiError(
                    400,
                    "unknown_parameter",
                    f"unrecognized request argument supplied: {name}",
                    param=name,
                )
        return self

    @property
    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])

    @property
    def include_usage(self) -> bool:
        return self.stream and self.stream_options is not None and self.stream_options.include_usage


class ChatCompletionRequest(_Generation):
    messages: list[Message] = Field(min_length=1, max_length=MAX_MESSAGES)
    max_completion_tokens: int | None = Field(None, ge=1)
    response_format: ResponseFormat | None = None

    @property
    def reply_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(_Generation):
    prompt: str = Field(min_length=1)

    @property
    def reply_limit(self) -> int | None:
        return self.max_tokens


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    refusal: None = None


FinishReason = Literal["stop", "length"]


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    logprobs: None = None
    finish_reason: FinishReason


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    system_fingerprint: str | None = None
    choices: list[ChatChoice]
    usage: Usage
    citations: dict[str, str] | None = Field(
        None,
        description="A knowledge base's answer: what each number the reply may cite ('1' for "
        "[1]) stands for (an entry id); also on the first chunk of a stream. Null for models "
        "that do not cite.",
    )


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: None = None
    finish_reason: FinishReason


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    system_fingerprint: str | None = None
    choices: list[CompletionChoice]
    usage: Usage
