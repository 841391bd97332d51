from __future__ import annotations

from pathlib import Path

import pytest

from forgeline.config.knowledge import KnowledgeDataConfig
from forgeline.errors import DataError
from forgeline.tasks.knowledge_qa.data import read_questions
from forgeline.tasks.knowledge_qa.knowledge_base import load_knowledge_base

FAQ = """id,question,alternatives,answer,category
card-lost,I lost my card,Card missing|Where is my card,Block it in the app.,cards
pin,How do I change my PIN?,,At any ATM.,cards
"""


def _data(tmp_path: Path, faq: str, **extra: object) -> KnowledgeDataConfig:
    (tmp_path / "faq.csv").write_text(faq, encoding="utf-8")
    (tmp_path / "questions.csv").write_text("question,entry\nx,pin\n", encoding="utf-8")
    return KnowledgeDataConfig(train=Path("questions.csv"), entries=Path("faq.csv"), **extra)


def test_entries_keep_alternatives_and_metadata(tmp_path: Path) -> None:
    knowledge = load_knowledge_base(_data(tmp_path, FAQ), tmp_path)
    lost, pin = knowledge.entries
    assert lost.phrasings == ("I lost my card", "Card missing", "Where is my card")
    assert lost.metadata == {"category": "cards"}
    assert pin.alternatives == ()


def test_every_problem_is_reported_with_its_row_and_column(tmp_path: Path) -> None:
    faq = FAQ + "pin,Again?,,Twice.,cards\nempty,Nothing here?,,,cards\n"
    with pytest.raises(DataError) as error:
        load_knowledge_base(_data(tmp_path, faq), tmp_path)
    message = str(error.value)
    assert "faq.csv, row 4 (line 5), column 'answer': empty" in message
    assert "duplicate id 'pin'" in message and "row 2 (line 3)" in message


def test_documents_become_passages_with_ids_and_headings(tmp_path: Path) -> None:
    guides = tmp_path / "guides"
    guides.mkdir()
    (guides / "travel.md").write_text("# Travel\n\nTell us before.\n\n## Abroad\n\nFees apply.\n")
    data = _data(tmp_path, FAQ, documents=[Path("guides")])
    passages = load_knowledge_base(data, tmp_path).entries[2:]
    assert [(p.id, p.question, p.answer) for p in passages] == [
        ("guides/travel.md#1", "Travel", "Tell us before."),
        ("guides/travel.md#2", "Travel > Abroad", "Fees apply."),
    ]
    assert passages[1].metadata == {"source": "guides/travel.md", "line": "7"}


def test_labelled_questions_must_name_known_entries(tmp_path: Path) -> None:
    data = _data(tmp_path, FAQ)
    knowledge = load_knowledge_base(data, tmp_path)
    questions = tmp_path / "q.csv"
    questions.write_text("question,entry\nlost it,card-lost\nweather?,NONE\nhm,cardd-lost\n,pin\n")
    with pytest.raises(DataError) as error:
        read_questions(questions, data, knowledge)
    message = str(error.value)
    assert "row 3 (line 4), column 'entry': no entry with id 'cardd-lost'" in message
    assert "row 4 (line 5), column 'question': empty" in message
    questions.write_text("question,entry\nlost it,card-lost\nweather?,NONE\n")
    frame = read_questions(questions, data, knowledge)
    assert list(frame["entry"]) == ["card-lost", "none"]


def test_training_questions_become_phrasings_of_their_entries(tmp_path: Path) -> None:
    knowledge = load_knowledge_base(_data(tmp_path, FAQ), tmp_path)
    asked = knowledge.with_asked(
        ["lost it on the bus", "weather?", "I lost my card"], ["card-lost", "none", "card-lost"]
    )
    lost, pin = asked.entries
    assert lost.asked == ("lost it on the bus", "I lost my card")
    # The entry's own question is not repeated among its phrasings.
    assert lost.phrasings == (
        "I lost my card",
        "Card missing",
        "Where is my card",
        "lost it on the bus",
    )
    assert pin == knowledge.entries[1]
