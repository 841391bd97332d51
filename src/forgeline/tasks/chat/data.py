"""Conversations for a chat project: JSON Lines of ``{"messages": [{"role", "content"}, ...]}``,
or a table (CSV, JSONL, Parquet) of prompt and response columns, one one-turn conversation a row.

Every problem is reported with its file, line (or row) and message (an unknown role, empty
content, a conversation that does not end with the assistant's reply), all of them at once,
before any model is loaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from forgeline.config import Project
from forgeline.config.chat import ChatConfig
from forgeline.data import fingerprint_files
from forgeline.data.io import display_path, read_table
from forgeline.data.problems import raise_problems
from forgeline.data.split import split_frames
from forgeline.data.values import is_missing
from forgeline.errors import DataError
from forgeline.tasks.base import ChatMessage, DataSplits

if TYPE_CHECKING:
    from forgeline.privacy.training import TextRedaction

MESSAGES = "messages"
SOURCE = "source"
ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Conversation:
    messages: list[ChatMessage]
    source: str
    """Where it came from, e.g. ``data/test.jsonl, line 3``."""


def read_conversations(path: Path) -> list[Conversation]:
    """The conversations of a JSONL file; raises :class:`DataError` listing every problem."""
    if not path.is_file():
        raise DataError(f"no such file '{path}'")
    if path.suffix.lower() != ".jsonl":
        raise DataError(
            f"{path}: conversations are read from JSON Lines (.jsonl) files; a table of "
            "prompts and replies needs data.prompt_column and data.response_column"
        )
    shown = display_path(path)
    conversations: list[Conversation] = []
    problems: list[str] = []
    with path.open(encoding="utf-8-sig") as lines:  # with or without a byte-order mark
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{shown}, line {number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})")
                continue
            messages, found = _messages(record, where)
            problems.extend(found)
            if not found:
                conversations.append(Conversation(messages, where))
    raise_problems(problems, "problem(s) in the conversations")
    if not conversations:
        raise DataError(f"{shown}: the file has no conversations")
    return conversations


def read_pairs(path: Path, prompt_column: str, response_column: str) -> list[Conversation]:
    """A table's rows as one-turn conversations (the prompt from the user, the response from
    the assistant); raises :class:`DataError` listing every empty cell."""
    table = read_table(path)
    frame = table.frame
    missing = [c for c in (prompt_column, response_column) if c not in frame.columns]
    if missing:
        raise DataError(
            f"{display_path(path)}: no column {', '.join(map(repr, missing))} (data."
            f"{'prompt' if missing[0] == prompt_column else 'response'}_column); the file has "
            f"{', '.join(map(repr, map(str, frame.columns)))}"
        )
    conversations: list[Conversation] = []
    problems: list[str] = []
    for position, (prompt, response) in enumerate(
        zip(frame[prompt_column], frame[response_column], strict=True)
    ):
        empty = [
            column
            for column, value in ((prompt_column, prompt), (response_column, response))
            if is_missing(value) or not str(value).strip()
        ]
        problems.extend(f"{table.where(position, column)}: empty" for column in empty)
        if not empty:
            messages = [
                ChatMessage(role="user", content=str(prompt)),
                ChatMessage(role="assistant", content=str(response)),
            ]
            conversations.append(Conversation(messages, table.where(position)))
    raise_problems(problems, "problem(s) in the conversations")
    return conversations


def _messages(record: Any, where: str) -> tuple[list[ChatMessage], list[str]]:
    if not isinstance(record, dict) or not isinstance(record.get(MESSAGES), list):
        return [], [f'{where}: expected an object with a "messages" list']
    unknown = sorted(set(record) - {MESSAGES})
    if unknown:
        return [], [f"{where}: unknown key(s) {', '.join(map(repr, unknown))}"]
    problems: list[str] = []
    messages: list[ChatMessage] = []
    for index, message in enumerate(record[MESSAGES]):
        at = f"{where}, messages[{index}]"
        if not isinstance(message, dict) or set(message) != {"role", "content"}:
            problems.append(f'{at}: expected {{"role": ..., "content": ...}}')
            continue
        role, content = message["role"], message["content"]
        if role not in ROLES:
            problems.append(f"{at}.role: unknown role {role!r} (use {', '.join(ROLES)})")
        elif role == "system" and index != 0:
            problems.append(f"{at}.role: a system message may only come first")
        if not isinstance(content, str) or not content.strip():
            problems.append(f"{at}.content: empty content")
        messages.append(ChatMessage(role=str(role), content=str(content)))
    if not problems:
        roles = [m["role"] for m in messages]
        if "user" not in roles:
            problems.append(f"{where}: the conversation has no user message")
        elif roles[-1] != "assistant":
            problems.append(f"{where}: the conversation must end with the assistant's reply")
    return messages, problems


def prepare_conversations(project: Project) -> DataSplits:
    """The project's conversations as train/validation/test frames (one conversation per row,
    columns ``messages`` and ``source``); empty frames when the project has no data."""
    config = project.config_for(ChatConfig)
    empty = pd.DataFrame({MESSAGES: [], SOURCE: []})
    files = project.data_files()
    if config.data is None or not files:
        return DataSplits(empty, empty, empty, {"sha256": "", "files": {}})
    prompt, response = config.data.prompt_column, config.data.response_column
    read = {
        field: _frame(
            read_pairs(path, prompt, response)
            if prompt is not None and response is not None
            else read_conversations(path)
        )
        for field, path in files.items()
    }
    if "train" in read:  # validation and test not given are split from it, seeded
        read = split_frames(read, None, config.data.split)
    prepared = DataSplits(
        train=read.get("train", empty),
        validation=read.get("validation", empty),
        test=read["test"],
        fingerprint=fingerprint_files(files),
    )
    if not config.data.redact:
        return prepared
    from forgeline.privacy.training import redacted  # Presidio: only when asked

    return redacted(prepared, project, _redact_messages)


def _redact_messages(frame: pd.DataFrame, redaction: TextRedaction) -> pd.DataFrame:
    """Every message of every conversation, redacted in one batch."""
    conversations: list[list[ChatMessage]] = list(frame[MESSAGES])
    contents = redaction.texts([m["content"] for c in conversations for m in c])
    redacted_conversations, position = [], 0
    for conversation in conversations:
        redacted_conversations.append(
            [
                ChatMessage(role=message["role"], content=contents[position + index])
                for index, message in enumerate(conversation)
            ]
        )
        position += len(conversation)
    rewritten = frame.copy()
    rewritten[MESSAGES] = pd.Series(redacted_conversations, index=frame.index, dtype=object)
    return rewritten


def _frame(conversations: list[Conversation]) -> pd.DataFrame:
    return pd.DataFrame(
        {MESSAGES: [c.messages for c in conversations], SOURCE: [c.source for c in conversations]}
    )
