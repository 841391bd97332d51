"""The pure-Python text helpers: UTF-8 reassembly and stop-string hold-back."""

from __future__ import annotations

from forgeline.tasks.chat.stops import StopCheck, StopMatcher, Utf8Stream


def test_utf8_stream_waits_for_the_last_byte_of_a_character() -> None:
    stream = Utf8Stream()
    emoji = "🙂".encode()  # four bytes, as a byte-level tokenizer may split them
    assert stream.feed(b"ok " + emoji[:1]) == "ok "
    assert stream.feed(emoji[1:3]) == ""
    assert stream.feed(emoji[3:] + "é".encode()) == "🙂é"
    assert stream.flush() == ""


def test_utf8_stream_replaces_bytes_that_never_complete() -> None:
    stream = Utf8Stream()
    assert stream.feed("é".encode()[:1]) == ""
    assert stream.flush() == "\ufffd"
    assert stream.feed(b"\xff!") == "\ufffd!"


def test_a_stop_string_split_over_tokens_is_never_emitted() -> None:
    matcher = StopMatcher(["###"])
    assert matcher.feed("Answer: yes #") == StopCheck("Answer: yes ", stopped=False)
    assert matcher.feed("#") == StopCheck("", stopped=False)
    assert matcher.feed("# and more") == StopCheck("", stopped=True)
    assert matcher.stopped


def test_held_back_text_is_released_once_it_cannot_be_a_stop() -> None:
    matcher = StopMatcher(["</end>"])
    assert matcher.feed("a </e") == StopCheck("a ", stopped=False)
    assert matcher.feed("x") == StopCheck("</ex", stopped=False)
    assert matcher.feed("</en") == StopCheck("", stopped=False)
    assert matcher.flush() == "</en"


def test_the_earliest_of_several_stops_wins() -> None:
    matcher = StopMatcher(["world", "lo w", ""])
    assert matcher.feed("hello world") == StopCheck("hel", stopped=True)


def test_without_stops_text_passes_straight_through() -> None:
    matcher = StopMatcher([])
    assert matcher.feed("anything <|im_end|>") == StopCheck("anything <|im_end|>", stopped=False)
    assert matcher.flush() == ""
