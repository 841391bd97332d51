"""The knowledge base: FAQ entries from a table and passages of documents, as one list of
entries a question is matched against.

Every problem (a duplicate id, an empty answer, a missing column) is reported with its file,
row and column, all at once, before any model is loaded.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from forgeline.config.knowledge import DOCUMENT_SUFFIXES, NO_ANSWER, KnowledgeDataConfig
from forgeline.data.io import Table, decoded_text, display_path, read_table
from forgeline.data.problems import raise_problems
from forgeline.data.values import is_missing
from forgeline.errors import DataError
from forgeline.tasks.knowledge_qa.passages import split_document

ALTERNATIVES_SEPARATOR = "|"


@dataclass(frozen=True)
class Entry:
    """One answer the knowledge base can give, and the phrasings of the question it answers."""

    id: str
    question: str
    answer: str
    alternatives: tuple[str, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)
    """Extra columns of an FAQ row (category, url, ...) or a passage's source and line."""
    asked: tuple[str, ...] = ()
    """Training questions labelled with this entry: matched like its own phrasings."""

    @property
    def phrasings(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((self.question, *self.alternatives, *self.asked)))

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "question": self.question,
            "answer": self.answer,
            "alternatives": list(self.alternatives),
            "metadata": self.metadata,
            "asked": list(self.asked),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Entry:
        return cls(
            data["id"],
            data["question"],
            data["answer"],
            tuple(data["alternatives"]),
            dict(data["metadata"]),
            tuple(data.get("asked", ())),
        )


@dataclass(frozen=True)
class KnowledgeBase:
    entries: list[Entry]

    def __post_init__(self) -> None:
        ids = [entry.id for entry in self.entries]
        if len(set(ids)) != len(ids):
            raise ValueError("entry ids must be unique")

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries)

    @property
    def ids(self) -> list[str]:
        return [entry.id for entry in self.entries]

    def with_asked(self, questions: Sequence[str], entries: Sequence[str]) -> KnowledgeBase:
        """Each labelled question (not ``none``) added to its entry's :attr:`Entry.asked`."""
        asked: dict[str, list[str]] = {}
        for question, entry_id in zip(questions, entries, strict=True):
            if entry_id != NO_ANSWER:
                asked.setdefault(entry_id, []).append(question)
        return KnowledgeBase(
            [replace(e, asked=(*e.asked, *asked.get(e.id, ()))) for e in self.entries]
        )

    def position(self) -> dict[str, int]:
        """Entry id to its position in :attr:`entries`."""
        return {entry.id: index for index, entry in enumerate(self.entries)}

    def to_jsonl(self) -> str:
        return "".join(json.dumps(e.to_json(), ensure_ascii=False) + "\n" for e in self.entries)

    @classmethod
    def from_jsonl(cls, text: str) -> KnowledgeBase:
        return cls([Entry.from_json(json.loads(line)) for line in text.splitlines() if line])


def text_key(text: str) -> str:
    """What an embedding is cached under: the same text embeds the same way."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def load_knowledge_base(data: KnowledgeDataConfig, root: Path) -> KnowledgeBase:
    """The FAQ entries, then the passages of the documents (in file order)."""
    entries: list[Entry] = []
    problems: list[str] = []
    if data.entries is not None:
        table = read_table(_resolved(data.entries, root), data.text_format())
        entries.extend(_faq_entries(table, data, problems))
    for document in document_files(data.documents, root):
        entries.extend(_passages(document, data, root))
    seen: dict[str, str] = {}
    for entry in entries:
        where = entry.metadata.get("where", entry.id)
        if entry.id in seen:
            problems.append(f"{where}: duplicate id {entry.id!r} (also at {seen[entry.id]})")
        seen.setdefault(entry.id, where)
    raise_problems(problems, "problem(s) in the knowledge base")
    if not entries:
        raise DataError("the knowledge base has no entries (data.entries and data.documents)")
    return KnowledgeBase([_without_where(entry) for entry in entries])


def _resolved(path: Path, root: Path) -> Path:
    return path if path.is_absolute() else root / path


def _without_where(entry: Entry) -> Entry:
    return replace(entry, metadata={k: v for k, v in entry.metadata.items() if k != "where"})


def _faq_entries(table: Table, data: KnowledgeDataConfig, problems: list[str]) -> list[Entry]:
    frame = table.frame
    required = (data.id_column, data.question_column, data.answer_column)
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise DataError(
            f"{display_path(table.source)}: no column {', '.join(map(repr, missing))}; the file "
            f"has {', '.join(map(repr, map(str, frame.columns)))} (set data.id_column, "
            "data.question_column and data.answer_column)"
        )
    known = {*required, data.alternatives_column}
    extra = [str(column) for column in frame.columns if column not in known]
    entries = []
    for position, row in enumerate(frame.to_dict("records")):
        empty = [column for column in required if _text(row[column]) is None]
        problems.extend(f"{table.where(position, column)}: empty" for column in empty)
        entry_id = _text(row[data.id_column])
        if entry_id is not None and entry_id.lower() == NO_ANSWER:
            problems.append(
                f"{table.where(position, data.id_column)}: '{NO_ANSWER}' is reserved for "
                "questions the knowledge base cannot answer"
            )
        alternatives = _alternatives(row.get(data.alternatives_column))
        if empty or entry_id is None:
            continue
        metadata = {c: text for c in extra if (text := _text(row[c])) is not None}
        metadata["where"] = table.where(position)
        entries.append(
            Entry(
                entry_id,
                str(_text(row[data.question_column])),
                str(_text(row[data.answer_column])),
                alternatives,
                metadata,
            )
        )
    return entries


def _text(value: Any) -> str | None:
    """A cell as stripped text; None when it is empty."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def _alternatives(value: Any) -> tuple[str, ...]:
    """Other phrasings: a list (JSONL, Parquet) or '|'-separated text (CSV)."""
    if isinstance(value, list | tuple | np.ndarray):
        items: Sequence[Any] = list(value)
    elif value is None or is_missing(value):
        return ()
    else:
        items = str(value).split(ALTERNATIVES_SEPARATOR)
    return tuple(text for item in items if (text := _text(item)) is not None)


def document_files(paths: Sequence[Path], root: Path) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        resolved = _resolved(path, root)
        if resolved.is_dir():
            found = sorted(
                p
                for p in resolved.rglob("*")
                if p.is_file() and p.suffix.lower() in DOCUMENT_SUFFIXES
            )
            if not found:
                raise DataError(
                    f"data.documents: {path} holds no {', '.join(DOCUMENT_SUFFIXES)} files"
                )
            files.extend(found)
        elif resolved.is_file():
            if resolved.suffix.lower() not in DOCUMENT_SUFFIXES:
                raise DataError(
                    f"data.documents: {path} is not a document; use "
                    f"{', '.join(DOCUMENT_SUFFIXES)} files or folders of them"
                )
            files.append(resolved)
        else:
            raise DataError(f"data.documents: no such file or folder '{path}'")
    return files


def _passages(path: Path, data: KnowledgeDataConfig, root: Path) -> list[Entry]:
    """A document's passages as entries: id ``<file>#<n>``, its heading path (or the file's
    name before any heading) as the question, the passage as the answer."""
    try:
        name = path.relative_to(root).as_posix()
    except ValueError:
        name = path.name
    text = decoded_text(path, data.encoding)
    markdown = path.suffix.lower() != ".txt"
    entries = []
    passages = split_document(text, data.passage_words, markdown=markdown)
    for number, passage in enumerate(passages, start=1):
        title = " > ".join(h for h in passage.headings if h) or path.stem.replace("_", " ")
        entries.append(
            Entry(
                f"{name}#{number}",
                title,
                passage.text,
                metadata={
                    "source": name,
                    "line": str(passage.line),
                    "where": f"{display_path(path)}, line {passage.line}",
                },
            )
        )
    return entries
