"""Between character spans and the network's sub-tokens: windows over long texts, one tag per
word on the word's first sub-token, and entities read back as character spans of the text as
sent.

Words are the tokenizer's pre-tokenizer words (for BERT: split at whitespace and punctuation),
located in the original text through the fast tokenizer's offset mapping, which follows the
text through lower-casing, accent stripping and Unicode normalization. Training and prediction
use the same words, so a model never sees a segmentation at prediction time that it was not
trained on.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from forgeline.tasks.token_classification.formats import Entity, spans_from_iob2

OUTSIDE = "O"
LINE_BREAK = "\u00b6"
"""What the network sees for a line break (a pilcrow, one character for one, so offsets do not
move): the tokenizer drops whitespace, and where lines break says much about where an address
or a signature's parts begin and end."""
CharSpan = tuple[int, int]


@dataclass(frozen=True)
class Window:
    """Up to ``max_length`` tokens of one text, ready for the network."""

    text_index: int
    features: dict[str, list[int]]
    """input_ids, attention_mask (and token_type_ids where the model has them)."""
    first_tokens: dict[int, int]
    """Word index -> position of the word's first sub-token, for the words that begin here."""

    def __len__(self) -> int:
        return len(self.features["input_ids"])

    def centrality(self, position: int) -> int:
        """How far ``position`` is from the window's nearer edge: the context it was seen with."""
        return min(position, len(self) - 1 - position)


@dataclass(frozen=True)
class Tokenized:
    windows: list[Window]
    words: list[list[CharSpan]]
    """Per text, the character span of each word, in order."""


def tokenize(tokenizer: object, texts: Sequence[str], max_length: int, stride: int) -> Tokenized:
    """``texts`` cut into windows of at most ``max_length`` tokens, consecutive windows sharing
    ``stride`` tokens, and the words of each text."""
    encoded = tokenizer(  # type: ignore[operator]
        [text.replace("\n", LINE_BREAK) for text in texts],
        truncation=True,
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )
    owners: list[int] = encoded["overflow_to_sample_mapping"]
    spans: list[dict[int, CharSpan]] = [{} for _ in texts]
    token_words: list[list[int | None]] = []
    for index, owner in enumerate(owners):
        word_ids = encoded.word_ids(index)
        token_words.append(word_ids)
        for word, (start, end) in zip(word_ids, encoded["offset_mapping"][index], strict=True):
            if word is None:
                continue
            known = spans[owner].get(word)
            spans[owner][word] = (start, end) if known is None else (known[0], max(known[1], end))
    # Word ids count pre-tokenizer words, some of which may have no token (a lone control
    # character); number the words that have one.
    ranks = [{word: rank for rank, word in enumerate(sorted(found))} for found in spans]
    feature_names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in encoded]
    windows = []
    for index, owner in enumerate(owners):
        # The word of the token just before this window's first content token: a window after
        # the first starts with the last `stride` content tokens of the one before it.
        previous_word: int | None = None
        if index > 0 and owners[index - 1] == owner:
            before = [w for w in token_words[index - 1] if w is not None]
            previous_word = before[len(before) - stride - 1]
        first_tokens: dict[int, int] = {}
        for position, word in enumerate(token_words[index]):
            # A word's first sub-token is the one whose predecessor in the text's unbroken
            # token stream belongs to another word. Not "the token at the word's first
            # character": Hangul and some Indic letters decompose into several tokens that
            # all start there.
            if word is not None and word != previous_word and word not in first_tokens:
                first_tokens[word] = position
            previous_word = word if word is not None else previous_word
        windows.append(
            Window(
                owner,
                {name: list(encoded[name][index]) for name in feature_names},
                {ranks[owner][word]: position for word, position in first_tokens.items()},
            )
        )
    words = []
    for text, found in zip(texts, spans, strict=True):
        ordered = [found[w] for w in sorted(found)]
        # Each word may grow up to where the next one starts (or the text ends).
        limits = [start for start, _ in ordered[1:]] + ([len(text)] if ordered else [])
        words.append(
            [
                _with_trailing_marks(text, span, limit)
                for span, limit in zip(ordered, limits, strict=True)
            ]
        )
    return Tokenized(windows, words)


_JOINERS = {"\u200d", "\u200c"}  # zero-width joiner and non-joiner


def _with_trailing_marks(text: str, span: CharSpan, limit: int) -> CharSpan:
    """``span`` extended over the combining marks after it (accents of decomposed text, Indic
    vowel signs, Arabic harakat, emoji variation selectors and joiners), which the tokenizer's
    normalizer drops and so gives to no token: an entity must not end inside a character.
    ``limit`` is where the next word starts."""
    start, end = span
    while end < limit and (
        unicodedata.category(text[end]) in ("Mn", "Me") or text[end] in _JOINERS
    ):
        end += 1
    return start, end


def tags_for_spans(units: Sequence[CharSpan], entities: Sequence[Entity]) -> list[str]:
    """IOB2 tags of ``units`` (words or a data file's tokens): a unit belongs to the first
    entity it overlaps; the first unit of an entity is B-, the others I-."""
    tags = [OUTSIDE] * len(units)
    for entity in entities:
        inside = False
        for index, (start, end) in enumerate(units):
            if start < entity.end and entity.start < end and tags[index] == OUTSIDE:
                tags[index] = ("I-" if inside else "B-") + entity.label
                inside = True
            elif inside and start >= entity.end:
                break
    return tags


def misaligned_entities(units: Sequence[CharSpan], entities: Sequence[Entity]) -> int:
    """How many entities start or end inside a word (tagging word by word moves the boundary
    to the word's edge)."""
    starts = {start for start, _ in units}
    ends = {end for _, end in units}
    return sum(1 for e in entities if e.start not in starts or e.end not in ends)


@dataclass(frozen=True)
class FoundEntity:
    type: str
    start: int
    end: int
    score: float


def entities_from_tags(
    words: Sequence[CharSpan], tags: Sequence[str], scores: Sequence[float]
) -> list[FoundEntity]:
    """Entities of word tags (an I- that does not continue an entity of its type starts one),
    each spanning from its first word's start to its last word's end; its score is the mean of
    its words' tag probabilities."""
    found = []
    for first, last, label in spans_from_iob2(tags):
        word_scores = scores[first:last]
        found.append(
            FoundEntity(
                label,
                words[first][0],
                words[last - 1][1],
                float(sum(word_scores) / len(word_scores)),
            )
        )
    return found
