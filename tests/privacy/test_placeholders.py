from __future__ import annotations

import re
from collections.abc import Sequence

import pytest

from forgeline.privacy.detector import Span
from forgeline.privacy.placeholders import Placeholders

NAME = "Maria Lopez"
PHONE = "+44 20 7946 0958"


def _detect(texts: Sequence[str]) -> list[list[Span]]:
    """A stand-in for the detector that finds two known values by position."""
    found = []
    for text in texts:
        spans = [
            Span(m.start(), m.end(), kind, 1.0)
            for kind, value in (("PERSON", NAME), ("PHONE_NUMBER", PHONE), ("PERSON", "Li Wei"))
            for m in re.finditer(re.escape(value), text)
        ]
        found.append(sorted(spans, key=lambda s: s.start))
    return found


def test_values_get_one_placeholder_each_across_the_conversation() -> None:
    placeholders = Placeholders()
    messages = [
        f"I am {NAME}, call me on {PHONE}.",
        f"Thanks {NAME}.",
        "Also Li Wei, my partner.",
    ]
    hidden = placeholders.hide_texts(messages, _detect)
    assert hidden == [
        "I am <PERSON_1>, call me on <PHONE_NUMBER_1>.",
        "Thanks <PERSON_1>.",
        "Also <PERSON_2>, my partner.",
    ]
    assert len(placeholders) == 3
    assert NAME not in repr(hidden) and PHONE not in repr(hidden)


def test_a_whole_reply_is_restored_and_made_up_placeholders_are_left() -> None:
    placeholders = Placeholders()
    placeholders.hide_texts([f"{NAME} {PHONE}"], _detect)
    reply = "Dear <PERSON_1>, we will call <PHONE_NUMBER_1>, not <PERSON_7> or <b>."
    assert (
        placeholders.restore(reply) == f"Dear {NAME}, we will call {PHONE}, not <PERSON_7> or <b>."
    )


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 64])
def test_a_streamed_reply_is_restored_whatever_its_chunks(size: int) -> None:
    """A placeholder split across chunks (``<PER`` + ``SON_1>``) comes out whole, and nothing of
    the reply is lost or repeated."""
    placeholders = Placeholders()
    placeholders.hide_texts([f"{NAME} on {PHONE}"], _detect)
    reply = "Hello <PERSON_1>! I rang <PHONE_NUMBER_1> <3 times, <PERSON_1>"
    restorer = placeholders.restorer()
    sent = []
    for start in range(0, len(reply), size):
        out = restorer.feed(reply[start : start + size])
        assert "<PERSON_" not in out and "<PHONE" not in out  # no placeholder gets out
        sent.append(out)
    sent.append(restorer.flush())
    assert "".join(sent) == f"Hello {NAME}! I rang {PHONE} <3 times, {NAME}"
    assert not any(part.startswith("SON_1>") for part in sent)


def test_a_tail_that_only_looks_like_a_placeholder_is_sent_at_the_end() -> None:
    restorer = Placeholders().restorer()
    assert restorer.feed("a <TAB") == "a "
    assert restorer.feed("LE") == ""
    assert restorer.flush() == "<TABLE"


def test_what_is_held_back_is_bounded() -> None:
    restorer = Placeholders().restorer()
    out = restorer.feed("<" + "A" * 200)
    assert len(out) >= 200 - 64
