"""The interface every task implements, so the CLI and the server never branch on task type.

A task class is looked up by the config's ``task:`` key (see :mod:`forgeline.tasks.registry`).
Like a scikit-learn estimator, an instance is made from config, fitted, then used to predict
and evaluate; it saves itself into a directory the model registry owns and loads back from it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, Self, TypedDict, cast

import pandas as pd

from forgeline.config.load import Project
from forgeline.errors import NotSupportedError

if TYPE_CHECKING:
    from forgeline.config.chat import EngineConfig, GenerationConfig
    from forgeline.tasks.chat.engine import GenerationEngine

Prediction = dict[str, Any]
"""One prediction as JSON-ready data; the keys depend on the task."""

Notify = Callable[[str], None]
"""Where a task sends progress notices and data warnings meant for the user."""

Capability = Literal["predict", "explain", "generate"]
"""What a task's models can be asked over the API; the server mounts routes by capability."""


class ChatMessage(TypedDict):
    """One turn of a conversation, as in OpenAI's chat API."""

    role: str
    content: str


@dataclass(frozen=True)
class PreparedChat:
    """A conversation made ready for the engine by the model that answers it."""

    messages: list[ChatMessage]
    """What the engine is given (e.g. with the model's system prompt, or retrieved entries)."""
    citations: dict[str, str] = field(default_factory=dict)
    """Numbers the reply may cite (``"1"`` for ``[1]``) and what each stands for (an entry id)."""
    reply: str | None = None
    """Said as it is instead of generating (e.g. a knowledge base's fallback)."""
    units: int = 0
    """Billable units of the preparation itself (e.g. one search), besides the tokens."""


@dataclass(frozen=True)
class DataSplits:
    """Validated train/validation/test data, with where it came from."""

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    fingerprint: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class MarkedText:
    """A text with labelled character spans the report highlights (e.g. entities)."""

    caption: str
    text: str
    spans: list[tuple[int, int, str]]
    """(start, end, label), in order and not overlapping."""


@dataclass(frozen=True)
class ReportSection:
    """A part of the HTML report: a heading, optional paragraphs, tables, figures and texts
    with highlighted spans."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[pd.DataFrame] = field(default_factory=list)
    figures_png: list[bytes] = field(default_factory=list)
    marked_texts: list[MarkedText] = field(default_factory=list)


@dataclass(frozen=True)
class Evaluation:
    """What ``evaluate`` measured: JSON-ready metrics, a terminal summary and report sections."""

    metrics: dict[str, Any]
    summary: list[tuple[str, str]]
    sections: list[ReportSection]
    warnings: list[str] = field(default_factory=list)


class Task(Protocol):
    """A model of one kind: fit, evaluate, save and load. What else it offers is said by
    ``capabilities``, each with a protocol of its own (:class:`Predictor`, :class:`Generator`);
    the CLI and the server ask for one with :func:`predictor` or :func:`generator`, never by
    task name."""

    name: ClassVar[str]
    """The ``task:`` value in the config."""

    @property
    def capabilities(self) -> frozenset[Capability]:
        """What the server offers for this model (see :data:`Capability`); most tasks set it
        per class, a knowledge base generates only when its config names a chat model."""
        ...

    @classmethod
    def prepare_data(cls, project: Project) -> DataSplits:
        """Read and validate the project's data, splitting it when only train is given."""
        ...

    @classmethod
    def fit(cls, project: Project, data: DataSplits, notify: Notify) -> Self:
        """Train a new model on ``data.train``, selecting on ``data.validation``."""
        ...

    @classmethod
    def load(cls, directory: Path) -> Self:
        """Load a model saved by :meth:`save` (safetensors, GGUF and JSON, never pickle)."""
        ...

    def save(self, directory: Path) -> None: ...

    @property
    def training_metrics(self) -> dict[str, Any]:
        """Validation metrics measured while fitting, stored with the model."""
        ...

    @property
    def labels(self) -> list[str]:
        """The labels a classifier returns (empty for tasks without labels)."""
        ...

    def compress(
        self, project: Project, data: DataSplits, notify: Notify
    ) -> tuple[Self, dict[str, Any]]:
        """A smaller, faster model checked against this one on ``data.validation``, and a
        report (sizes, latencies, metric change). Raises NotSupportedError where there is
        nothing to compress, CompressionRefused when a check fails."""
        ...

    def evaluate(self, data: pd.DataFrame) -> Evaluation:
        """Measure the model on held-out data (normally the test split)."""
        ...


class Predictor(Task, Protocol):
    """A task whose models ``predict`` (and perhaps ``explain``) a batch of inputs."""

    def predict(self, inputs: Sequence[Any]) -> list[Prediction]:
        """Predict a batch; inputs are already validated by :meth:`check_inputs`."""
        ...

    def input_schema(self) -> dict[str, Any]:
        """JSON Schema of one prediction input, published by the server."""
        ...

    def prediction_schema(self) -> dict[str, Any]:
        """JSON Schema of one prediction, published by the server (a typed client reads it)."""
        ...

    def check_inputs(self, inputs: Sequence[Any], max_input_chars: int | None = None) -> None:
        """Raise :class:`forgeline.errors.InputError` naming the first bad input. What it
        accepts must be exactly what :meth:`input_schema` publishes."""
        ...

    def inputs_from_table(self, frame: pd.DataFrame, source: str) -> list[Any]:
        """Extract prediction inputs from a data file (for batch prediction from the CLI)."""
        ...

    def parse_cli_input(self, text: str) -> Any:
        """Turn one command-line argument into a prediction input."""
        ...

    def explain(self, inputs: Sequence[Any]) -> list[dict[str, Any]]:
        """Per input, how much each feature pushed the prediction; only asked of tasks that
        can ``explain``."""
        ...

    def explanation_schema(self) -> dict[str, Any]:
        """JSON Schema of one explanation; only asked of tasks that can ``explain``."""
        ...


class Generator(Task, Protocol):
    """A task whose models generate text on a generation engine: their own (a chat model) or
    another model's, bound at load (a knowledge base answering through a chat model)."""

    @property
    def system_prompt(self) -> str | None:
        """Said to the model before a conversation that brings no system message."""
        ...

    @property
    def completes_prompts(self) -> bool:
        """Whether a raw prompt may be continued (OpenAI's legacy completions); a model that
        grounds a conversation first answers chat only."""
        ...

    @property
    def requires(self) -> tuple[str, ...]:
        """Names of the models in the same registry this one generates with (see
        :meth:`bind`); empty for a model with an engine of its own."""
        ...

    def bind(self, models: Mapping[str, Generator]) -> None:
        """Hand over the loaded models named by :attr:`requires`, before the first use."""
        ...

    @property
    def generation(self) -> GenerationConfig:
        """The defaults of every request."""
        ...

    @property
    def engine_settings(self) -> EngineConfig:
        """How the engine is sized: context per sequence, parallel sequences, threads."""
        ...

    def engine(self) -> GenerationEngine:
        """This process's engine for the model, started on first use (one per process: two
        llama.cpp users in one process slow each other down)."""
        ...

    def prepare(self, messages: list[ChatMessage]) -> PreparedChat:
        """``messages`` as the engine is to see them (the model's system prompt first unless
        they bring their own; a grounded model adds what it retrieved), or a reply to give
        without generating."""
        ...

    def close(self) -> None:
        """Stop the engine, if this model started it."""
        ...


def predictor(model: Task) -> Predictor:
    """``model`` as a :class:`Predictor`, or an error saying it cannot predict."""
    if "predict" not in model.capabilities:
        raise NotSupportedError(
            f"{model.name} models do not predict; they can: {', '.join(sorted(model.capabilities))}"
        )
    return cast(Predictor, model)


def generator(model: Task) -> Generator:
    """``model`` as a :class:`Generator`, or an error saying it cannot generate."""
    if "generate" not in model.capabilities:
        raise NotSupportedError(
            f"{model.name} models do not generate text; they can: "
            f"{', '.join(sorted(model.capabilities))}"
        )
    return cast(Generator, model)
