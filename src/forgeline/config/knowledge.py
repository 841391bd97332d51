"""The config of a ``knowledge-qa`` project: a knowledge base (FAQ entries and documents), the
labelled questions it is measured on, how questions are matched to entries, and what is said
when nothing matches well enough."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal, Self

from pydantic import Field, field_validator, model_validator

from forgeline.config.data_files import DataFiles
from forgeline.config.encoder import CompressConfig
from forgeline.config.privacy import RedactedTexts
from forgeline.config.project import ProjectBase
from forgeline.config.sections import NAME_PATTERN, Section
from forgeline.config.training import TrainingConfig
from forgeline.data.io import SUPPORTED_SUFFIXES

DOCUMENT_SUFFIXES = (".md", ".markdown", ".txt")
NO_ANSWER = "none"
"""The entry label of a question the knowledge base cannot answer."""
GROUNDED_INSTRUCTIONS = "You are a helpful customer support assistant."


class KnowledgeDataConfig(DataFiles, RedactedTexts):
    """The knowledge base (``entries`` and/or ``documents``) and labelled questions (``train``,
    split into validation and test when those are not given)."""

    suffixes: ClassVar[tuple[str, ...]] = SUPPORTED_SUFFIXES

    train: Path = Field(
        description="Labelled questions (CSV, JSONL, Parquet): a question column and the id of "
        f"the entry that answers it, or '{NO_ANSWER}'. Validation questions choose the "
        "threshold, test questions are what `forgeline evaluate` measures, and the rest "
        "fine-tune the encoder when encoder.fine_tune is on."
    )
    entries: Path | None = Field(
        None,
        description="FAQ entries (CSV, JSONL, Parquet): an id, a question, an answer, optional "
        "alternative phrasings and any metadata columns (category, url, ...).",
    )
    documents: list[Path] = Field(
        default_factory=list,
        description="Markdown or text files (or folders of them) split into passages, each an "
        "entry with its heading path as its question.",
    )
    id_column: str = Field("id", min_length=1)
    question_column: str = Field("question", min_length=1)
    answer_column: str = Field("answer", min_length=1)
    alternatives_column: str = Field(
        "alternatives",
        min_length=1,
        description="Optional: other phrasings of the question, a list (JSONL, Parquet) or "
        "texts separated by '|' (CSV).",
    )
    query_column: str = Field(
        "question", min_length=1, description="Labelled questions: the column with the question."
    )
    label_column: str = Field(
        "entry", min_length=1, description="Labelled questions: the column with the entry id."
    )
    passage_words: int = Field(
        200, ge=20, le=2000, description="Documents are cut into passages of about this length."
    )

    @model_validator(mode="after")
    def _some_knowledge(self) -> Self:
        if self.entries is None and not self.documents:
            raise ValueError("give data.entries (an FAQ table), data.documents, or both")
        return self

    def files(self) -> dict[str, Path]:
        found = super().files()
        if self.entries is not None:
            found["entries"] = self.entries
        return found


class RetrievalConfig(Section):
    """How a question is scored against each entry: the best cosine similarity of its
    embedding to the entry's phrasings and, weighted, to its answer, plus a weighted BM25
    score of the entry's words (relative to the question's best)."""

    answer_weight: float | Literal["auto"] = Field(
        "auto",
        description="Weight of the similarity to the entry's answer text (0: phrasings only). "
        "auto: the one of 0, 0.25, 0.5 and 1 that ranks the validation questions' entries best.",
    )
    lexical_weight: float | Literal["auto"] = Field(
        "auto",
        description="Weight of the BM25 score next to the dense score (0: dense only). auto: "
        "the one of 0, 0.05, 0.1, 0.2 and 0.3 that ranks the validation questions' entries best.",
    )
    top_k: int = Field(3, ge=1, le=100, description="Entries returned per question.")
    match_training_questions: bool = Field(
        True,
        description="Match each training question like a phrasing of its entry (questions "
        "customers asked are often asked again in other words).",
    )

    @field_validator("answer_weight", "lexical_weight")
    @classmethod
    def _weight_in_range(cls, value: float | str) -> float | str:
        if isinstance(value, float | int) and not 0 <= value <= 1:
            raise ValueError(f"must be between 0 and 1, or 'auto' (got {value})")
        return value


class EncoderTuningConfig(TrainingConfig):
    """Contrastive fine-tuning of the sentence encoder (in-batch negatives) on the knowledge
    base's own phrasings and the training questions."""

    fine_tune: bool = Field(
        True,
        description="Fine-tune the encoder (off: the bundled encoder as it is). It is tuned "
        "again only when the training questions or these settings change: edits to the "
        "knowledge base are embedded with the encoder as it was, and only what changed is.",
    )
    learning_rate: float = Field(5e-5, gt=0, lt=1)
    batch_size: int = Field(32, ge=2, le=1024)
    epochs: float = Field(
        4,
        gt=0,
        le=50,
        description="Passes over the pairs at most: the epoch with the best validation MRR is "
        "kept (or the encoder as it was, if none beats it).",
    )
    early_stopping_patience: int = Field(
        1, ge=1, description="Epochs without a better validation MRR before stopping."
    )
    max_length: int = Field(128, ge=16, le=512, description="Tokens per text when training.")


class AnswerConfig(Section):
    """What a question gets back: the matched entries, or the fallback when none is trusted."""

    fallback: str = Field(
        "I could not find this in our knowledge base; a colleague will get back to you.",
        min_length=1,
        description="Said instead of an answer when no entry scores above the threshold.",
    )
    threshold: float | Literal["auto"] = Field(
        "auto",
        description="Lowest score of a trusted match. 'auto' picks on the validation questions "
        "the highest threshold that costs at most max_accuracy_drop of accuracy (questions "
        f"labelled '{NO_ANSWER}' count as right when they get the fallback).",
    )
    max_accuracy_drop: float = Field(0.01, ge=0, le=1)
    generate: str | None = Field(
        None,
        pattern=NAME_PATTERN,
        description="A chat model in the same registry (its project's name) that writes "
        "answers from the matched entries, citing them as [1], [2]: served through "
        "/v1/chat/completions with this model's name. Unset: answers are the entries' own "
        "text (predict only).",
    )
    context_entries: int = Field(
        3,
        ge=1,
        le=10,
        description="Entries put into a generated answer's prompt at most: the best ones that "
        "score at or above the threshold.",
    )
    instructions: str = Field(
        GROUNDED_INSTRUCTIONS,
        min_length=1,
        description="The system prompt of a generated answer, unless the conversation brings "
        "its own (the matched entries and the request to cite them go with the question).",
    )


class KnowledgeQAConfig(ProjectBase):
    """Match questions to a knowledge base and answer from it, or say it does not know."""

    task: Literal["knowledge-qa"]
    base_model: str = Field(
        "minilm-l6",
        description="A catalogue sentence encoder (minilm-l6) or a sentence-transformers "
        "model directory.",
    )
    data: KnowledgeDataConfig
    retrieval: RetrievalConfig = RetrievalConfig()
    encoder: EncoderTuningConfig = EncoderTuningConfig()
    answer: AnswerConfig = AnswerConfig()
    compress: CompressConfig = CompressConfig()

    @model_validator(mode="after")
    def _answers_through_another_model(self) -> Self:
        if self.answer.generate == self.name:
            raise ValueError("answer.generate names a chat model, not this knowledge base")
        return self

    @property
    def base(self) -> str:
        return self.base_model
