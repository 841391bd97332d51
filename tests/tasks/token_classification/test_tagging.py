"""Words and their character offsets, tags from spans, windows over long texts, and entities
read back from word tags."""

from __future__ import annotations

import unicodedata
from typing import Any

import numpy as np
import pandas as pd

from forgeline.tasks.token_classification.formats import Entity
from forgeline.tasks.token_classification.inference import window_logits, word_logits
from forgeline.tasks.token_classification.tagging import (
    entities_from_tags,
    misaligned_entities,
    tags_for_spans,
    tokenize,
)
from forgeline.tasks.token_classification.training import IGNORED, labelled_windows, tag_names
from tests.tasks.token_classification.conftest import PositionEncoder


def _words(tokenizer: Any, text: str) -> list[str]:
    (words,) = tokenize(tokenizer, [text], 128, 32).words
    return [text[start:end] for start, end in words]


def test_word_offsets_point_into_the_text_as_sent(tokenizer: Any) -> None:
    # Double spaces, a tab, accents the uncased tokenizer strips, an emoji it does not know,
    # CJK characters it splits one by one; a line break is a word of its own (the network sees
    # it as a pilcrow).
    text = "Send  it to\tMaría Ñúñez,\r\nZürich 😀 order #12 到北京"
    assert _words(tokenizer, text) == [
        "Send", "it", "to", "María", "Ñúñez", ",", "\n", "Zürich", "😀", "order", "#", "12", "到", "北", "京",
    ]  # fmt: skip


def test_words_keep_the_combining_marks_the_tokenizer_drops(tokenizer: Any) -> None:
    decomposed = unicodedata.normalize("NFD", "Zoë Müller")
    assert _words(tokenizer, decomposed) == decomposed.split(" ")
    assert _words(tokenizer, "नमस्ते दुनिया") == ["नमस्ते", "दुनिया"]  # vowel signs
    assert _words(tokenizer, "مُحَمَّدٌ علي") == ["مُحَمَّدٌ", "علي"]  # harakat


def test_first_sub_tokens_of_letters_that_decompose_into_several_tokens(tokenizer: Any) -> None:
    # Hangul syllables become several tokens that all start at the same character: only the
    # first may carry the word's label, also in windows after the first.
    text = "서울 한국어 " * 30
    windowed = tokenize(tokenizer, [text], 16, 4)
    for window in windowed.windows:
        pieces = tokenizer.convert_ids_to_tokens(window.features["input_ids"])
        assert not [pieces[p] for p in window.first_tokens.values() if pieces[p].startswith("##")]
    begun = set().union(*(w.first_tokens for w in windowed.windows))
    assert begun == set(range(len(windowed.words[0]))) and len(windowed.words[0]) == 60


def test_each_word_is_tagged_on_its_first_sub_token_only(tokenizer: Any) -> None:
    text = "Ask Krisztián Szöllösy about unbelievableness"
    tags = tag_names(["person"])
    frame = pd.DataFrame({"text": [text], "entities": [(Entity(4, 22, "person"),)]})
    windows = labelled_windows(tokenizer, frame, {t: i for i, t in enumerate(tags)}, 64, 8)
    assert len(windows) == 1
    window = windows[0]
    tokens = tokenizer.convert_ids_to_tokens(window["input_ids"])
    labelled = [
        (tok, tags[label])
        for tok, label in zip(tokens, window["labels"], strict=True)
        if label != IGNORED
    ]
    assert labelled == [
        ("ask", "O"), ("kris", "B-person"), ("s", "I-person"), ("about", "O"), ("unbelievable", "O"),
    ]  # fmt: skip
    # Special tokens and the continuation pieces (##z, ##tian, ##zo, ...) are out of the loss.
    assert tokens.count("[CLS]") == 1 and window["labels"][0] == IGNORED
    assert sum(label != IGNORED for label in window["labels"]) == 5 < len(tokens)


def test_tags_for_spans_and_misalignment() -> None:
    units = [(0, 4), (5, 10), (11, 16), (17, 19)]  # "Anna Maria Lopez in"
    entities = [Entity(0, 16, "person")]
    assert tags_for_spans(units, entities) == ["B-person", "I-person", "I-person", "O"]
    assert misaligned_entities(units, entities) == 0
    # An entity ending inside a word takes the whole word, and is counted.
    inside = [Entity(5, 13, "person")]
    assert tags_for_spans(units, inside) == ["O", "B-person", "I-person", "O"]
    assert misaligned_entities(units, inside) == 1


def test_entities_from_tags_span_the_text_between_their_words() -> None:
    words = [(0, 4), (6, 11), (12, 14), (15, 21)]  # "Mary  Lopez in London"
    tags = ["B-person", "I-person", "O", "I-city"]  # an I- after O starts an entity
    found = entities_from_tags(words, tags, [0.9, 0.7, 0.99, 0.6])
    assert [(e.type, e.start, e.end) for e in found] == [("person", 0, 11), ("city", 15, 21)]
    assert np.isclose(found[0].score, 0.8)


def test_long_texts_are_cut_into_overlapping_windows_and_merged(tokenizer: Any) -> None:
    words = [f"w{i}" for i in range(300)]  # "w12" is two tokens: w, ##12
    text = " ".join(words)
    windowed = tokenize(tokenizer, [text], 32, 8)
    assert len(windowed.windows) > 10
    assert [text[s:e] for s, e in windowed.words[0]] == words
    # Every word begins in some window; consecutive windows share tokens.
    begun = set().union(*(w.first_tokens for w in windowed.windows))
    assert begun == set(range(len(words)))
    first, second = windowed.windows[:2]
    assert set(first.first_tokens) & set(second.first_tokens)

    # Each word takes its row from the window where it sits furthest from an edge: the row
    # of its own first token (the same token id as without windows), most central.
    logits = window_logits(PositionEncoder(), tokenizer, windowed.windows)
    (merged,) = word_logits(windowed, logits)
    (single,) = tokenize(tokenizer, [text], 1024, 0).windows
    ids = single.features["input_ids"]
    assert [int(row[0]) for row in merged] == [ids[single.first_tokens[w]] for w in range(300)]
    for word, row in enumerate(merged):
        seen_from = [
            w.centrality(w.first_tokens[word]) for w in windowed.windows if word in w.first_tokens
        ]
        assert int(row[1]) == max(seen_from)
    assert max(int(row[1]) for row in merged) > min(int(row[1]) for row in merged[20:280]) >= 4
