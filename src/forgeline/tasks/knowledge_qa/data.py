"""Labelled questions of a knowledge-qa project: each question with the id of the entry that
answers it, or ``none`` when the knowledge base cannot. Validation questions choose the
threshold, test questions are what ``forgeline evaluate`` measures, the rest may fine-tune the
encoder."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from forgeline.config import Project
from forgeline.config.knowledge import NO_ANSWER, KnowledgeDataConfig, KnowledgeQAConfig
from forgeline.data import fingerprint_files
from forgeline.data.io import display_path, read_table
from forgeline.data.problems import raise_problems
from forgeline.data.split import split_frames
from forgeline.errors import DataError
from forgeline.tasks.base import DataSplits
from forgeline.tasks.knowledge_qa.knowledge_base import (
    KnowledgeBase,
    document_files,
    load_knowledge_base,
)

QUESTION = "question"
ENTRY = "entry"
"""Columns of the question frames: the text and the entry id (or ``none``)."""


def prepare_questions(project: Project) -> DataSplits:
    """The labelled questions as train/validation/test frames (columns ``question`` and
    ``entry``), checked against the knowledge base; the fingerprint covers both."""
    config = project.config_for(KnowledgeQAConfig)
    knowledge = load_knowledge_base(config.data, project.root)
    question_files = {
        role: path for role, path in project.data_files().items() if role != "entries"
    }
    frames = {
        role: read_questions(path, config.data, knowledge) for role, path in question_files.items()
    }
    # Not stratified by entry: most entries have one or two questions, and test questions
    # whose entry no training question names are exactly the case that must be measured.
    frames = split_frames(frames, None, config.data.split)
    documents = document_files(config.data.documents, project.root)
    fingerprint = fingerprint_files(
        project.data_files() | {f"documents/{display_path(p)}": p for p in documents}
    )
    for role in ("validation", "test"):
        if frames[role].empty:
            raise DataError(
                f"data.{role}: no labelled questions left for {role}; give more questions "
                f"or a larger data.split.{role}"
            )
    prepared = DataSplits(frames["train"], frames["validation"], frames["test"], fingerprint)
    if not config.data.redact:
        return prepared
    # The customers' questions, not the knowledge base: its answers are the company's own.
    from forgeline.privacy.training import column_rewrite, redacted  # Presidio: when asked

    return redacted(prepared, project, column_rewrite(QUESTION))


def read_questions(path: Path, data: KnowledgeDataConfig, knowledge: KnowledgeBase) -> pd.DataFrame:
    """A file of labelled questions; every empty cell or unknown entry id is an error."""
    table = read_table(path, data.text_format())
    frame = table.frame
    columns = (data.query_column, data.label_column)
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise DataError(
            f"{display_path(path)}: no column {', '.join(map(repr, missing))} (data."
            f"{'query' if missing[0] == data.query_column else 'label'}_column); the "
            f"file has {', '.join(map(repr, map(str, frame.columns)))}"
        )
    known = set(knowledge.ids)
    problems: list[str] = []
    questions: list[str] = []
    entries: list[str] = []
    for position, (question, entry) in enumerate(
        zip(frame[data.query_column], frame[data.label_column], strict=True)
    ):
        question_text = "" if pd.isna(question) else str(question).strip()
        entry_id = "" if pd.isna(entry) else str(entry).strip()
        if not question_text:
            problems.append(f"{table.where(position, data.query_column)}: empty")
        if not entry_id:
            problems.append(
                f"{table.where(position, data.label_column)}: empty (an entry id, or "
                f"'{NO_ANSWER}' for a question the knowledge base cannot answer)"
            )
        elif entry_id.lower() == NO_ANSWER:
            entry_id = NO_ANSWER
        elif entry_id not in known:
            problems.append(
                f"{table.where(position, data.label_column)}: no entry with id {entry_id!r} "
                "in the knowledge base"
            )
        questions.append(question_text)
        entries.append(entry_id)
    raise_problems(problems, "problem(s) in the labelled questions")
    return pd.DataFrame({QUESTION: questions, ENTRY: entries})
