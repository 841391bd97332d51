"""Reading conversations: every problem reported with its file, line and message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from forgeline.errors import DataError
from forgeline.tasks.chat.data import read_conversations, read_pairs


def _write(path: Path, lines: list[object]) -> Path:
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")
    return path


def _turns(*pairs: tuple[str, str]) -> dict[str, object]:
    return {"messages": [{"role": role, "content": content} for role, content in pairs]}


def test_good_conversations_are_read_with_where_they_came_from(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "c.jsonl",
        [
            _turns(("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello!")),
            _turns(("user", "Q1"), ("assistant", "A1"), ("user", "Q2"), ("assistant", "A2")),
        ],
    )
    conversations = read_conversations(path)
    assert [len(c.messages) for c in conversations] == [3, 4]
    assert conversations[1].source.endswith("c.jsonl, line 2")


def test_every_problem_is_listed_with_its_line_and_message(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(
        "\n".join(
            [
                json.dumps(_turns(("user", "Hi"), ("bot", "Hello"))),
                json.dumps(_turns(("user", "Hi"), ("assistant", "  "))),
                json.dumps(_turns(("user", "Hi"))),
                json.dumps(_turns(("user", "Hi"), ("system", "late"), ("assistant", "x"))),
                "{not json",
                json.dumps({"turns": []}),
            ]
        ),
        encoding="utf-8",
    )
    with pytest.raises(DataError) as error:
        read_conversations(path)
    message = str(error.value)
    assert "6 problem(s)" in message
    assert "line 1, messages[1].role: unknown role 'bot' (use system, user, assistant)" in message
    assert "line 2, messages[1].content: empty content" in message
    assert "line 3: the conversation must end with the assistant's reply" in message
    assert "line 4, messages[1].role: a system message may only come first" in message
    assert "line 5: not valid JSON" in message
    assert 'line 6: expected an object with a "messages" list' in message


def test_only_json_lines_files_are_read(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("prompt,response\n", encoding="utf-8")
    with pytest.raises(DataError, match="JSON Lines"):
        read_conversations(path)


def test_a_table_of_prompts_and_responses_becomes_one_turn_conversations(tmp_path: Path) -> None:
    path = tmp_path / "pairs.csv"
    path.write_text(
        'instruction,response,intent\n"where is my parcel?","It is on its way.",track\n'
        '"cancel order 12","Done: order 12 is cancelled.",cancel\n',
        encoding="utf-8",
    )
    conversations = read_pairs(path, "instruction", "response")
    assert [c.messages for c in conversations][1] == [
        {"role": "user", "content": "cancel order 12"},
        {"role": "assistant", "content": "Done: order 12 is cancelled."},
    ]
    assert conversations[1].source.endswith("pairs.csv, row 2 (line 3)")


def test_empty_cells_and_missing_columns_of_a_pairs_table_are_named(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    _write(
        path,
        [
            {"q": "hi", "a": "hello"},
            {"q": "  ", "a": "x"},
            {"q": "thanks", "a": None},
        ],
    )
    with pytest.raises(DataError) as error:
        read_pairs(path, "q", "a")
    message = str(error.value)
    assert "2 problem(s)" in message
    assert "pairs.jsonl, line 2, column 'q': empty" in message
    assert "pairs.jsonl, line 3, column 'a': empty" in message
    with pytest.raises(DataError, match=r"no column 'answer' \(data.response_column\)"):
        read_pairs(path, "q", "answer")
