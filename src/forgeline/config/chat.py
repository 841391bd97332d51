"""The config of a ``chat`` project: a GGUF chat model, its system prompt, how it generates by
default, how its engine serves concurrent requests, the conversations it is measured on, and
how it is fine-tuned on them."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal, Self

from pydantic import Field, model_validator

from forgeline.config.privacy import RedactedTexts
from forgeline.config.project import ProjectBase, SplitConfig
from forgeline.config.sections import Section
from forgeline.config.training import TrainingConfig
from forgeline.data.io import SUPPORTED_SUFFIXES

MAX_STOPS = 4  # as OpenAI's API
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""Every linear layer of a Llama-style block: on small models adapters on all of them learn
more per parameter than on the attention projections alone (QLoRA, Dettmers et al., 2023)."""


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


class ChatDataConfig(RedactedTexts):
    """Conversations as JSONL, one per line: ``{"messages": [{"role", "content"}, ...]}``,
    each ending with an assistant reply; or a table (CSV, JSONL, Parquet) of prompt and
    response columns, each row a one-turn conversation. ``forgeline train`` fine-tunes on the
    train conversations (with a ``training`` section) and ``forgeline evaluate`` measures the
    model on the test ones; with only ``train`` given, validation and test are split from it."""

    train: Path | None = Field(None, description="Conversations for training.")
    validation: Path | None = Field(None, description="Held out for choosing the best epoch.")
    test: Path | None = Field(None, description="Held out for `forgeline evaluate`.")
    split: SplitConfig = SplitConfig()
    prompt_column: str | None = Field(
        None, min_length=1, description="With response_column: the files are tables of pairs."
    )
    response_column: str | None = Field(
        None, min_length=1, description="The assistant's reply to the prompt of the same row."
    )

    suffixes: ClassVar[tuple[str, ...]] = SUPPORTED_SUFFIXES
    """The file types the task reads (CSV and Parquet only as tables of pairs)."""

    @model_validator(mode="after")
    def _some_conversations(self) -> Self:
        if self.train is None and self.test is None:
            raise ValueError("give data.test (conversations to evaluate on) or data.train")
        if (self.prompt_column is None) != (self.response_column is None):
            raise ValueError("give both data.prompt_column and data.response_column, or neither")
        return self

    def files(self) -> dict[str, Path]:
        named = {"train": self.train, "validation": self.validation, "test": self.test}
        return {field: path for field, path in named.items() if path is not None}


class LoraConfig(Section):
    """The low-rank adapters trained on the frozen base model (peft's LoRA)."""

    rank: int = Field(16, ge=1, le=256, description="Rank of each adapter's two matrices.")
    alpha: int = Field(32, ge=1, description="Scale of the adapters' output (alpha / rank).")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the adapters' input.")
    target_modules: list[str] = Field(
        default_factory=lambda: list(LORA_TARGETS),
        min_length=1,
        description="Linear layers that get adapters (names inside each transformer block).",
    )


class ExportConfig(Section):
    """The GGUF file the fine-tuned model is served from, and the checks it must pass first."""

    quantization: Literal["f16", "q8_0"] = Field(
        "q8_0", description="Weights of the exported GGUF (q8_0: half the size of f16)."
    )
    min_token_agreement: float = Field(
        0.9,
        ge=0,
        le=1,
        description="Share of greedy reply tokens on validation prompts on which the GGUF must "
        "agree with the fine-tuned model it was exported from.",
    )
    max_perplexity_change: float = Field(
        0.05,
        gt=0,
        description="Largest relative difference in validation reply perplexity between the "
        "GGUF and the fine-tuned model (0.05: 5%).",
    )
    parity_conversations: int = Field(
        16, ge=1, description="Validation conversations the export is checked on."
    )


class ChatTrainingConfig(TrainingConfig):
    """LoRA fine-tuning of the chat model on the project's conversations."""

    learning_rate: float = Field(2e-4, gt=0, lt=1)
    batch_size: int = Field(8, ge=1, le=4096)
    epochs: float = Field(3, gt=0, le=100, description="Passes over the training data at most.")
    max_length: int = Field(
        1024,
        ge=16,
        le=131_072,
        description="Tokens per conversation (template included). Longer ones are reported as "
        "errors, not cut.",
    )
    max_examples: int | None = Field(
        None, ge=1, description="Train on at most this many conversations (a seeded sample)."
    )
    lora: LoraConfig = LoraConfig()
    export: ExportConfig = ExportConfig()


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
    training: ChatTrainingConfig | None = Field(
        None,
        description="Fine-tune the model on data.train (LoRA) and serve the result; without "
        "it the base model is served as it is.",
    )

    @model_validator(mode="after")
    def _one_system_prompt(self) -> Self:
        if self.system_prompt is not None and self.system_prompt_file is not None:
            raise ValueError("give system_prompt or system_prompt_file, not both")
        if self.training is not None and (self.data is None or self.data.train is None):
            raise ValueError("training needs conversations to learn from: give data.train")
        if self.generation.max_tokens >= self.engine.context_tokens:
            raise ValueError(
                f"generation.max_tokens ({self.generation.max_tokens}) leaves no room for a "
                f"prompt in engine.context_tokens ({self.engine.context_tokens})"
            )
        return self

    @property
    def base(self) -> str:
        return self.base_model
