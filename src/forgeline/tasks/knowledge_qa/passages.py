"""Documents (Markdown or plain text) cut into passages that each carry their heading path.

Written here rather than taken from a text-splitting library (LangChain's splitters, for
instance) because what is needed is small, a heading path per passage and cuts at paragraph
boundaries, and those libraries bring large dependency trees for it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class Passage:
    headings: tuple[str, ...]
    """The headings above the passage, outermost first (empty before the first heading)."""
    text: str
    line: int
    """The line of the file the passage starts on (1-based)."""


def split_document(text: str, max_words: int, *, markdown: bool) -> list[Passage]:
    """Passages of at most about ``max_words`` words, cut between paragraphs (a longer
    paragraph between sentences, a longer sentence between words), never across a heading.

    Markdown headings (``#`` to ``######``) set the heading path of what follows; a ``#`` line
    inside a fenced code block is text. Plain text has no headings.
    """
    passages: list[Passage] = []
    headings: list[str] = []
    paragraph: list[str] = []
    paragraph_line = 0
    section: list[tuple[str, int]] = []  # the current heading's paragraphs, with their lines
    in_fence = False

    def end_paragraph() -> None:
        if paragraph:
            section.append((" ".join(line.strip() for line in paragraph), paragraph_line))
            paragraph.clear()

    def end_section() -> None:
        end_paragraph()
        passages.extend(_pack(section, tuple(headings), max_words))
        section.clear()

    for number, line in enumerate(text.splitlines(), start=1):
        if markdown and _FENCE.match(line):
            in_fence = not in_fence
        heading = _HEADING.match(line) if markdown and not in_fence else None
        if heading is not None:
            end_section()
            level = len(heading.group(1))
            del headings[level - 1 :]
            headings.extend([""] * (level - 1 - len(headings)))  # a skipped level stays empty
            headings.append(heading.group(2))
        elif not line.strip() and not in_fence:
            end_paragraph()
        else:
            if not paragraph:
                paragraph_line = number
            paragraph.append(line)
    end_section()
    return passages


def _pack(
    paragraphs: list[tuple[str, int]], headings: tuple[str, ...], max_words: int
) -> list[Passage]:
    """Consecutive paragraphs joined while they fit in ``max_words``."""
    pieces = [
        (piece, line) for paragraph, line in paragraphs for piece in _fitting(paragraph, max_words)
    ]
    passages: list[Passage] = []
    current: list[str] = []
    start = 0
    words = 0
    for piece, line in pieces:
        count = len(piece.split())
        if current and words + count > max_words:
            passages.append(Passage(headings, "\n\n".join(current), start))
            current, words = [], 0
        if not current:
            start = line
        current.append(piece)
        words += count
    if current:
        passages.append(Passage(headings, "\n\n".join(current), start))
    return passages


def _fitting(paragraph: str, max_words: int) -> list[str]:
    """A paragraph as pieces of at most ``max_words`` words: whole sentences where they fit."""
    if len(paragraph.split()) <= max_words:
        return [paragraph]
    pieces: list[str] = []
    current: list[str] = []
    for sentence in _SENTENCE_END.split(paragraph):
        words = sentence.split()
        while len(words) > max_words:  # a sentence longer than a passage: cut between words
            if current:
                pieces.append(" ".join(current))
                current = []
            pieces.append(" ".join(words[:max_words]))
            words = words[max_words:]
        if current and len(current) + len(words) > max_words:
            pieces.append(" ".join(current))
            current = []
        current.extend(words)
    if current:
        pieces.append(" ".join(current))
    return pieces
