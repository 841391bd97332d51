"""The config of a ``chat`` project: a GGUF chat model, its system prompt, how it generates by
default, how its engine serves concurrent requests, and the conversations it is measured on."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal, Self

from pydantic import Field, model_validator

from forgeline.config.project import ProjectBase, SplitConfig
from forgeline.config.sections import Section

MAX_STOPS = 4  # as OpenAI's API


class GenerationConfig(Section):
    """Defaults of every request; a request may override each."""

    max_tokens: int = Field(256, ge=1, description="Most tokens one reply may have.")
    temperature: float = Field(0.7, ge=0, le=2, description="0 is greedy (always the same).")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling: the top-p mass.")
    stop: list[str] = Field(
        default_factory=list,
        max_length=MAX_STOPS,
        description="Strings that end a reply (never part of it).",
    )


class EngineConfig(Section):
    """How one server process runs the model (llama.cpp): continuous batching of sequences."""

    context_tokens: int = Field(
        2048, ge=64, le=131_072, description="Context per sequence: prompt plus reply tokens."
    )
    parallel: int = Field(
        8, ge=1, le=64, description="Sequences decoded together; more wait in the queue."
    )
    threads: int | None = Field(
        None, ge=1, le=256, description="CPU threads (default: the CPUs the process may use)."
    )
    max_queue: int = Field(
        64, ge=0, description="Requests waiting for a sequence at most; beyond it, 429."
    )
    request_timeout_seconds: float = Field(
        300, gt=0, le=3600, description="A reply still generating after this is cut short."
    )


class ChatDataConfig(Section):
    """Conversations as JSONL, one per line: ``{"messages": [{"role", "content"}, ...]}``,
    each ending with an assistant reply. ``forgeline evaluate`` measures the model on the test
    conversations; with only ``train`` given, validation and test are split from it."""

    train: Path | None = Field(None, description="Conversations for training (.jsonl).")
    validation: Path | None = Field(None, description="Held out for choosing (.jsonl).")
    test: Path | None = Field(None, description="Held out for `forgeline evaluate` (.jsonl).")
    split: SplitConfig = SplitConfig()

    suffixes: ClassVar[tuple[str, ...]] = (".jsonl",)
    """The file types the task reads."""

    @model_validator(mode="after")
    def _some_conversations(self) -> Self:
        if self.train is None and self.test is None:
            raise ValueError("give data.test (conversations to evaluate on) or data.train")
        return self

    def files(self) -> dict[str, Path]:
        named = {"train": self.train, "validation": self.validation, "test": self.test}
        return {field: path for field, path in named.items() if path is not None}


class ChatConfig(ProjectBase):
    """Serve an instruction-tuned chat model (GGUF) through an OpenAI-compatible API."""

    task: Literal["chat"]
    base_model: str = Field(
        "smollm2-135m", description="A catalogue chat model (smollm2-135m) or a .gguf file."
    )
    system_prompt: str | None = Field(
        None, description="Said to the model before every conversation that brings none."
    )
    system_prompt_file: Path | None = Field(
        None, description="The system prompt from a text file (instead of system_prompt)."
    )
    generation: GenerationConfig = GenerationConfig()
    engine: EngineConfig = EngineConfig()
    data: ChatDataConfig | None = None

    @model_validator(mode="after")
    def _one_system_prompt(self) -> Self:
        if self.system_prompt is not None and self.system_prompt_file is not None:
            raise ValueError("give system_prompt or system_prompt_file, not both")
        if self.generation.max_tokens >= self.engine.context_tokens:
            raise ValueError(
                f"generation.max_tokens ({self.generation.max_tokens}) leaves no room for a "
                f"prompt in engine.context_tokens ({self.engine.context_tokens})"
            )
        return self

    @property
    def base(self) -> str:
        return self.base_model
