"""The knowledge-qa model: questions in, the best-matching knowledge-base entries out, with the
decision to answer from the top one or to say the fallback."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self, cast

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from transformers import AutoTokenizer
from transformers.utils import logging as hf_logging

from forgeline.base_models import resolve_base_model
from forgeline.config.chat import EngineConfig, GenerationConfig
from forgeline.config.knowledge import KnowledgeQAConfig
from forgeline.config.load import Project
from forgeline.encoders.runtime import Encoder, TorchEncoder, load_encoder
from forgeline.errors import NotSupportedError
from forgeline.tasks.base import (
    Capability,
    ChatMessage,
    DataSplits,
    Evaluation,
    Generator,
    Notify,
    Prediction,
    PreparedChat,
)
from forgeline.tasks.knowledge_qa.data import QUESTION, prepare_questions
from forgeline.tasks.knowledge_qa.embedder import SentenceEmbedder, embed
from forgeline.tasks.knowledge_qa.grounding import grounded, question_of
from forgeline.tasks.knowledge_qa.index import Index, Lexical, build_index
from forgeline.tasks.knowledge_qa.knowledge_base import KnowledgeBase
from forgeline.tasks.knowledge_qa.retrieval import best_k, signals
from forgeline.tasks.knowledge_qa.settings import SETTINGS_FILE, Settings
from forgeline.tasks.text_inputs import check_texts, text_input_schema, texts_from_table

if TYPE_CHECKING:
    from forgeline.tasks.chat.engine import GenerationEngine

hf_logging.disable_progress_bar()


class KnowledgeQA:
    """Question in, entries and a decision out: ``fit``, ``predict``, ``evaluate``,
    ``compress``, ``save``, ``load``."""

    name: ClassVar[str] = "knowledge-qa"

    def __init__(
        self,
        encoder: Encoder,
        tokenizer: Any,
        index: Index,
        settings: Settings,
        training_metrics: dict[str, Any] | None = None,
    ) -> None:
        self._encoder = encoder
        self._tokenizer = tokenizer
        self.index = index
        self.settings = settings
        self._lexical = Lexical(index.knowledge)
        self._training_metrics = training_metrics or {}
        self._writer: Generator | None = None
        """The chat model that writes generated answers, once bound (see :meth:`bind`)."""

    # -- the Task interface ------------------------------------------------------------------

    @property
    def capabilities(self) -> frozenset[Capability]:
        generates = self.settings.grounding is not None
        return frozenset({"predict", "generate"} if generates else {"predict"})

    @property
    def labels(self) -> list[str]:
        return []

    @property
    def training_metrics(self) -> dict[str, Any]:
        return dict(self._training_metrics)

    @property
    def knowledge(self) -> KnowledgeBase:
        return self.index.knowledge

    @property
    def encoder(self) -> Encoder:
        return self._encoder

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    @classmethod
    def prepare_data(cls, project: Project) -> DataSplits:
        config = project.config_for(KnowledgeQAConfig)
        resolve_base_model(config.base_model, project.root)  # fail before any data work
        return prepare_questions(project)

    @classmethod
    def fit(cls, project: Project, data: DataSplits, notify: Notify) -> Self:
        from forgeline.tasks.knowledge_qa.training import train_knowledge_model

        trained = train_knowledge_model(project, data, notify)
        return cls(
            TorchEncoder(trained.embedder),
            trained.tokenizer,
            trained.index,
            trained.settings,
            trained.metrics,
        )

    def save(self, directory: Path) -> None:
        self._encoder.save(directory)
        self._tokenizer.save_pretrained(directory)
        self.index.save(directory)
        text = json.dumps(self.settings.to_json(), indent=2)
        (directory / SETTINGS_FILE).write_text(text, encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> Self:
        settings = Settings.from_json(json.loads((directory / SETTINGS_FILE).read_text("utf-8")))
        metrics_file = directory / "metrics.json"
        return cls(
            load_encoder(directory, SentenceEmbedder),
            AutoTokenizer.from_pretrained(directory),
            Index.load(directory),
            settings,
            json.loads(metrics_file.read_text()) if metrics_file.is_file() else {},
        )

    def input_schema(self) -> dict[str, Any]:
        return text_input_schema("The question to answer from the knowledge base.")

    def prediction_schema(self) -> dict[str, Any]:
        entry = {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "question": {"type": "string"},
                "answer": {"type": "string"},
                "score": {"type": "number"},
                "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
            },
            "required": ["id", "question", "answer", "score", "metadata"],
            "additionalProperties": False,
        }
        return {
            "type": "object",
            "properties": {
                "decision": {
                    "enum": ["answered", "fallback"],
                    "description": "answered: the top entry scores at or above the threshold.",
                },
                "answer": {
                    "type": "string",
                    "description": "The top entry's answer, or the fallback text.",
                },
                "entry": {
                    "type": ["string", "null"],
                    "description": "The id of the entry answered from (null with the fallback).",
                },
                "entries": {
                    "type": "array",
                    "items": entry,
                    "description": "The best-scoring entries, best first.",
                },
            },
            "required": ["decision", "answer", "entry", "entries"],
            "additionalProperties": False,
        }

    def explanation_schema(self) -> dict[str, Any]:
        raise NotSupportedError("knowledge-qa models have no explanations")

    def check_inputs(self, inputs: Sequence[Any], max_input_chars: int | None = None) -> None:
        check_texts(inputs, max_input_chars)

    def inputs_from_table(self, frame: pd.DataFrame, source: str) -> list[Any]:
        return texts_from_table(frame, [QUESTION, "text"], source)

    def parse_cli_input(self, text: str) -> Any:
        return text

    def predict(self, inputs: Sequence[Any]) -> list[Prediction]:
        scores = self.scores(list(inputs))
        entries = self.knowledge.entries
        predictions = []
        for row in scores:
            best = best_k(row, self.settings.top_k)
            answered = bool(row[best[0]] >= self.settings.threshold)
            top = entries[int(best[0])]
            predictions.append(
                {
                    "decision": "answered" if answered else "fallback",
                    "answer": top.answer if answered else self.settings.fallback,
                    "entry": top.id if answered else None,
                    "entries": [
                        {
                            "id": entries[i].id,
                            "question": entries[i].question,
                            "answer": entries[i].answer,
                            "score": round(float(row[i]), 6),
                            "metadata": entries[i].metadata,
                        }
                        for i in best
                    ],
                }
            )
        return predictions

    def compress(
        self, project: Project, data: DataSplits, notify: Notify
    ) -> tuple[Self, dict[str, Any]]:
        from forgeline.tasks.knowledge_qa.compression import compress_knowledge_model

        compressed, report = compress_knowledge_model(self, data, project, notify)
        return cast(Self, compressed), report

    def explain(self, inputs: Sequence[Any]) -> list[dict[str, Any]]:
        raise NotSupportedError("knowledge-qa models have no explanations")

    def evaluate(self, data: pd.DataFrame) -> Evaluation:
        from forgeline.tasks.knowledge_qa.evaluation import evaluate_knowledge_model

        return evaluate_knowledge_model(self, data)

    # -- Generator: answers written by a chat model from the matched entries ------------------

    @property
    def requires(self) -> tuple[str, ...]:
        grounding = self.settings.grounding
        return () if grounding is None else (grounding.chat_model,)

    def bind(self, models: Mapping[str, Generator]) -> None:
        for name in self.requires:
            self._writer = models[name]

    @property
    def completes_prompts(self) -> bool:
        return False

    @property
    def system_prompt(self) -> str | None:
        return None if self.settings.grounding is None else self.settings.grounding.instructions

    @property
    def generation(self) -> GenerationConfig:
        return self._bound().generation

    @property
    def engine_settings(self) -> EngineConfig:
        return self._bound().engine_settings

    def engine(self) -> GenerationEngine:
        return self._bound().engine()

    def prepare(self, messages: list[ChatMessage]) -> PreparedChat:
        return self.ground(messages, self.scores([question_of(messages)])[0])

    def ground(self, messages: list[ChatMessage], scores: NDArray[np.float32]) -> PreparedChat:
        """``messages`` grounded in the entries, given every entry's score for the question
        (see :func:`grounding.grounded`)."""
        grounding = self.settings.grounding
        if grounding is None:
            raise NotSupportedError("this knowledge base has no answer.generate chat model")
        entries, settings = self.knowledge.entries, self.settings
        return grounded(messages, scores, entries, settings.threshold, settings.fallback, grounding)

    def close(self) -> None:
        return None  # the engine is the chat model's: it is closed with that model

    def _bound(self) -> Generator:
        if self._writer is None:
            raise NotSupportedError(
                "this knowledge base generates answers with a chat model bound when loaded "
                "from the registry"
                if self.settings.grounding is not None
                else "this knowledge base has no answer.generate chat model"
            )
        return self._writer

    # -- helpers -----------------------------------------------------------------------------

    def logits(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """The embeddings of ``texts`` (what the encoder network computes)."""
        size = self.settings.embedding_size
        return embed(self._encoder, self._tokenizer, texts, self.settings.max_length, size)

    def scores(self, questions: Sequence[str]) -> NDArray[np.float32]:
        """Every entry's score for each question, [questions, entries]."""
        weights = self.settings.weights
        lexical = self._lexical if weights.lexical else None
        vectors = self.logits(questions)
        found = signals(self.index, lexical, questions, vectors, answers=bool(weights.answer))
        return found.scores(weights)

    def with_encoder(self, encoder: Encoder) -> KnowledgeQA:
        """The same knowledge base and decisions on another encoder runtime, its index
        embedded again by that encoder (so questions and entries are embedded alike)."""
        size, length = self.settings.embedding_size, self.settings.max_length
        rebuilt = build_index(
            self.knowledge, lambda texts: embed(encoder, self._tokenizer, texts, length, size)
        )
        return KnowledgeQA(
            encoder,
            self._tokenizer,
            rebuilt.index,
            self.settings.on_runtime("onnx" if encoder.runtime == "onnx" else "torch"),
            self._training_metrics,
        )

    def with_metrics(self, metrics: dict[str, Any]) -> KnowledgeQA:
        return KnowledgeQA(self._encoder, self._tokenizer, self.index, self.settings, dict(metrics))
