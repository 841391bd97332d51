from __future__ import annotations

import numpy as np
import pytest

from forgeline.errors import InputError
from forgeline.tasks.base import ChatMessage
from forgeline.tasks.knowledge_qa.grounding import (
    CITE_REQUEST,
    SEARCH_UNITS,
    cited,
    grounded,
    question_of,
)
from forgeline.tasks.knowledge_qa.knowledge_base import Entry
from forgeline.tasks.knowledge_qa.settings import Grounding

ENTRIES = [
    Entry("refund", "How do I get a refund?", "Within 5 working days."),
    Entry("hours", "When are you open?", "Monday to Friday."),
    Entry("shipping", "What does shipping cost?", "Free over 50 EUR."),
]
GROUNDING = Grounding("assistant", context_entries=2, instructions="Answer from the entries.")
ASKED = [ChatMessage(role="user", content="is delivery free?")]


def test_the_best_entries_that_pass_the_threshold_go_with_the_question() -> None:
    scores = np.array([0.5, 0.2, 0.9], dtype=np.float32)
    prepared = grounded(ASKED, scores, ENTRIES, 0.4, "fallback", GROUNDING)
    assert prepared.reply is None and prepared.units == SEARCH_UNITS
    assert prepared.citations == {"1": "shipping", "2": "refund"}  # best first, 2 at most
    system, question = prepared.messages
    assert system == ChatMessage(role="system", content="Answer from the entries.")
    assert question["role"] == "user"
    assert "[1] What does shipping cost?\nFree over 50 EUR." in question["content"]
    assert "[2] How do I get a refund?" in question["content"]
    assert "When are you open?" not in question["content"]  # under the threshold
    assert "Customer question: is delivery free?" in question["content"]
    assert question["content"].endswith(CITE_REQUEST)


def test_nothing_over_the_threshold_gives_the_fallback_without_generating() -> None:
    scores = np.array([0.3, 0.2, 0.1], dtype=np.float32)
    prepared = grounded(ASKED, scores, ENTRIES, 0.4, "ask a colleague", GROUNDING)
    assert prepared.reply == "ask a colleague"
    assert prepared.citations == {} and prepared.units == SEARCH_UNITS


def test_a_conversation_keeps_its_own_system_prompt_and_earlier_turns() -> None:
    own = [
        ChatMessage(role="system", content="Be terse."),
        ChatMessage(role="user", content="hi"),
        ChatMessage(role="assistant", content="Hello!"),
        *ASKED,
    ]
    prepared = grounded(own, np.array([0.9, 0, 0], np.float32), ENTRIES, 0.4, "f", GROUNDING)
    assert prepared.messages[:3] == own[:3]
    assert prepared.messages[3]["content"].startswith("Knowledge base entries:\n\n[1] How do")


def test_the_last_user_message_is_searched() -> None:
    conversation = [
        ChatMessage(role="user", content="hi"),
        ChatMessage(role="assistant", content="Hello! How can I help?"),
        ChatMessage(role="user", content="my refund is late"),
    ]
    assert question_of(conversation) == "my refund is late"
    with pytest.raises(InputError, match="no user message"):
        question_of([ChatMessage(role="system", content="x")])


def test_citations_map_back_to_entry_ids_once_each_in_order() -> None:
    given = {"1": "shipping", "2": "refund"}
    assert cited("Free over 50 EUR [1]. Refunds take 5 days [2][1].", given) == [
        "shipping",
        "refund",
    ]
    assert cited("See [3] or [x].", given) == []  # numbers it was not given
