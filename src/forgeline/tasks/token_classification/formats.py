"""Read labelled named-entity data into one shape: character spans over a text.

NER data comes in two families: token-per-line files (CoNLL and its cousins, tagged in IOB1,
IOB2, IOBES or BILOU) and span files (JSON Lines, or a JSON list such as the Presidio-style
labelled PII data). Everything downstream sees only :class:`LabelledText`, so every tag scheme
and field naming is settled here, and every problem is reported with its file and line or record.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from forgeline.config.entities import TOKEN_PER_LINE_SUFFIXES, EntityDataConfig
from forgeline.data.io import TextFormat, decoded_text, display_path
from forgeline.data.problems import raise_problems
from forgeline.errors import DataError

_TAG = re.compile(r"([BIESLU])-(.+)")
_BILOU_AS_IOBES = {"L": "E", "U": "S"}
_PLAIN_KEYS = ("start", "end", "label")
_PRESIDIO_KEYS = ("start_position", "end_position", "entity_type")


@dataclass(frozen=True)
class Entity:
    """A labelled span: ``text[start:end]`` is the entity and ``label`` its type (no B-/I-)."""

    start: int
    end: int
    label: str


@dataclass(frozen=True)
class LabelledText:
    """One example: a text with its entities, sorted by start and never overlapping.

    ``words`` holds the (start, end) offsets of a token-per-line file's tokens, so that a model
    is scored on the annotators' own tokenization; None for span formats, which have none.
    """

    text: str
    entities: tuple[Entity, ...]
    words: tuple[tuple[int, int], ...] | None = None


def _parse_tag(tag: str) -> tuple[str, str] | None:
    """``(prefix, type)``, with BILOU's L-/U- read as E-/S-; None when the tag is ill-formed."""
    if tag == "O":
        return "O", ""
    match = _TAG.fullmatch(tag)
    if match is None:
        return None
    return _BILOU_AS_IOBES.get(match[1], match[1]), match[2]


def _tag_problems(tags: Sequence[str], where: Sequence[str]) -> list[str]:
    return [
        f"{place}: ill-formed tag {tag!r}; expected O, or B-, I-, E-, S- (or L-, U-) followed "
        "by a type"
        for tag, place in zip(tags, where, strict=True)
        if _parse_tag(tag) is None
    ]


def normalize_tags(tags: Sequence[str], where: Sequence[str]) -> list[str]:
    """One sentence's tags in IOB2, whether written in IOB1, IOB2, IOBES or BILOU.

    An I-X (or E-X) that does not continue an open X entity starts one: that is how IOB1 is
    read, and how seqeval's lenient mode reads such slips in IOB2, so IOB1 and IOB2 input give
    the same output. E-X and S-X close their entity, so a following I-X starts a new one. The
    schemes differ only after an E- or S- tag, so deciding per sentence is the same as per file.
    ``where`` names each tag's line for the error raised when one is ill-formed.
    """
    raise_problems(_tag_problems(tags, where), "invalid tag(s)")
    normalized = []
    open_type: str | None = None
    for tag in tags:
        parsed = _parse_tag(tag)
        assert parsed is not None  # checked above
        prefix, kind = parsed
        if prefix == "O":
            normalized.append("O")
            open_type = None
            continue
        continues = prefix in ("I", "E") and open_type == kind
        normalized.append(f"{'I' if continues else 'B'}-{kind}")
        open_type = None if prefix in ("E", "S") else kind
    return normalized


def spans_from_iob2(tags: Sequence[str]) -> list[tuple[int, int, str]]:
    """The entities of IOB2 ``tags`` as word ranges ``[start, end)`` with their type."""
    spans: list[tuple[int, int, str]] = []
    for index, tag in enumerate(tags):
        if tag == "O":
            continue
        prefix, kind = tag[:1], tag[2:]
        if prefix == "I" and spans and spans[-1][1] == index and spans[-1][2] == kind:
            spans[-1] = (spans[-1][0], index + 1, kind)
        else:
            spans.append((index, index + 1, kind))
    return spans


def _sentences(text: str) -> Iterator[list[tuple[int, str]]]:
    """Runs of (line number, line) between blank lines, leaving out -DOCSTART- lines."""
    sentence: list[tuple[int, str]] = []
    # Split on newlines only: str.splitlines() also splits at characters such as U+2028 or
    # U+0085, which can be tokens of their own.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip() or line.startswith("-DOCSTART-"):
            if sentence:
                yield sentence
            sentence = []
        else:
            sentence.append((number, line))
    if sentence:
        yield sentence


def _fields(line: str) -> list[str]:
    """A token line's columns: tab-separated when it has a tab (a token may then hold spaces)."""
    # Strip only ASCII blanks: a token may be a zero-width or ideographic space (UNER has some).
    line = line.strip(" \t\r")
    if "\t" in line:  # an empty column (e.g. a blank part-of-speech) still counts
        return [part.strip(" ") for part in line.split("\t")]
    return [part for part in line.split(" ") if part]


def _token_sentence(
    name: str, sentence: list[tuple[int, str]], columns: dict[str, int], problems: list[str]
) -> LabelledText | None:
    """One sentence; ``columns`` holds the first token line's column count and number, which
    every line must match (a line with another count is a shifted or stray column)."""
    tokens: list[str] = []
    tags: list[str] = []
    where: list[str] = []
    for number, line in sentence:
        fields = _fields(line)
        if len(fields) < 2 or not fields[0] or not fields[-1]:
            problems.append(
                f"{name}, line {number}: expected a token and a tag separated by a tab or spaces"
            )
            continue
        columns.setdefault("count", len(fields))
        columns.setdefault("line", number)
        if len(fields) != columns["count"]:
            problems.append(
                f"{name}, line {number}: {len(fields)} columns where line {columns['line']} "
                f"has {columns['count']} (the token first, the tag last)"
            )
            continue
        tokens.append(fields[0])
        tags.append(fields[-1])
        where.append(f"{name}, line {number}")
    tag_problems = _tag_problems(tags, where)
    problems.extend(tag_problems)
    if len(tokens) < len(sentence) or tag_problems:
        return None
    words = []
    offset = 0
    for token in tokens:
        words.append((offset, offset + len(token)))
        offset += len(token) + 1
    entities = tuple(
        Entity(words[first][0], words[last - 1][1], label)
        for first, last, label in spans_from_iob2(normalize_tags(tags, where))
    )
    return LabelledText(" ".join(tokens), entities, tuple(words))


def _entity(raw: object, text: str) -> Entity | str:
    """The entity, trimmed of surrounding whitespace, or what is wrong with it."""
    if not isinstance(raw, dict):
        return "expected an object with start, end and label"
    # Presidio's format (the labelled PII data) names the fields differently.
    presidio = any(key in raw for key in _PRESIDIO_KEYS)
    start_key, end_key, label_key = _PRESIDIO_KEYS if presidio else _PLAIN_KEYS
    missing = [key for key in (start_key, end_key, label_key) if key not in raw]
    if missing:
        return "missing " + ", ".join(repr(key) for key in missing)
    start, end, label = raw[start_key], raw[end_key], raw[label_key]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)):
        return f"offsets must be whole numbers, got {start_key}={start!r}, {end_key}={end!r}"
    if start >= end:
        return f"{start_key} {start} is not before {end_key} {end}"
    if start < 0 or end > len(text):
        return f"span {start}-{end} is outside the text ({len(text)} characters)"
    if not isinstance(label, str) or not label.strip():
        return f"empty label ({label_key!r})"
    value = raw.get("entity_value")
    if value is not None and value != text[start:end]:
        # Where they differ, not the values: labelled entities are often personal data.
        covered = text[start:end]
        differ = next(
            (i for i, (a, b) in enumerate(zip(str(value), covered, strict=False)) if a != b),
            min(len(str(value)), len(covered)),
        )
        return (
            f"entity_value is not the text at {start}-{end}: they differ from its character "
            f"{differ + 1} on ({len(str(value))} and {len(covered)} characters)"
        )
    # Annotators often select a space or line break with the entity; it is not part of it.
    covered = text[start:end]
    trimmed_start = start + len(covered) - len(covered.lstrip())
    trimmed_end = end - (len(covered) - len(covered.rstrip()))
    if trimmed_start >= trimmed_end:
        return f"span {start}-{end} covers only whitespace"
    return Entity(trimmed_start, trimmed_end, label.strip())


def _span_record(
    record: object, where: str, text_field: str, entities_field: str, problems: list[str]
) -> LabelledText | None:
    if not isinstance(record, dict):
        problems.append(f"{where}: expected a JSON object")
        return None
    text_key, entities_key = text_field, entities_field
    if text_field not in record and "full_text" in record:  # Presidio's record format
        text_key, entities_key = "full_text", "spans"
    text, raw_entities = record.get(text_key), record.get(entities_key)
    if not isinstance(text, str) or not text.strip():
        what = "missing" if text is None else "empty" if isinstance(text, str) else "not a string"
        problems.append(f"{where}: field {text_key!r} is {what}")
        return None
    if not isinstance(raw_entities, list):
        what = "missing" if raw_entities is None else "not a list"
        problems.append(f"{where}: field {entities_key!r} is {what}")
        return None
    entities: list[Entity] = []
    count = len(problems)
    for number, raw in enumerate(raw_entities, start=1):
        entity = _entity(raw, text)
        if isinstance(entity, str):
            problems.append(f"{where}: entity {number}: {entity}")
        else:
            entities.append(entity)
    entities.sort(key=lambda e: (e.start, e.end))
    widest: Entity | None = None  # the entity reaching furthest right so far
    for entity in entities:
        if widest is not None and entity.start < widest.end:
            problems.append(
                f"{where}: the entity at {entity.start}-{entity.end} overlaps the entity at "
                f"{widest.start}-{widest.end}"
            )
        if widest is None or entity.end > widest.end:
            widest = entity
    if len(problems) > count:
        return None
    return LabelledText(text, tuple(entities))


def _span_records(path: Path, text: str, problems: list[str]) -> Iterator[tuple[str, object]]:
    """(where, record) for each record of a JSON Lines or JSON file."""
    name = display_path(path)
    if path.suffix.lower() == ".jsonl":
        for number, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                yield f"{name}, line {number}", json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append(
                    f"{name}, line {number}: not valid JSON ({exc.msg} at column {exc.colno})"
                )
        return
    try:
        records = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{name}, line {exc.lineno}: not valid JSON ({exc.msg} at column {exc.colno})"
        ) from None
    if not isinstance(records, list):
        raise DataError(
            f"{name}: expected a JSON list of records, found a {type(records).__name__}"
        )
    for number, record in enumerate(records, start=1):
        yield f"{name}, record {number}", record


def read_labelled_texts(
    path: Path,
    text_format: TextFormat,
    text_field: str = "text",
    entities_field: str = "entities",
) -> list[LabelledText]:
    """Every labelled text of a token-per-line, JSON Lines or JSON file, chosen by suffix.

    Problems are collected and raised together (up to ten listed), so a user fixes a file in one
    pass rather than one error per run.
    """
    suffix = path.suffix.lower()
    if suffix not in EntityDataConfig.suffixes:
        raise DataError(
            f"{display_path(path)}: unsupported file type '{suffix or '(none)'}' for token "
            f"classification; use one of {', '.join(EntityDataConfig.suffixes)}"
        )
    if not path.is_file():
        raise DataError(f"no such file '{display_path(path)}'")
    text = decoded_text(path, text_format.encoding)
    problems: list[str] = []
    examples: list[LabelledText | None]
    if suffix in TOKEN_PER_LINE_SUFFIXES:
        name = display_path(path)
        columns: dict[str, int] = {}
        examples = [
            _token_sentence(name, sentence, columns, problems) for sentence in _sentences(text)
        ]
    else:
        examples = [
            _span_record(record, where, text_field, entities_field, problems)
            for where, record in _span_records(path, text, problems)
        ]
    raise_problems(problems, "invalid record(s)" if suffix == ".json" else "invalid line(s)")
    labelled = [example for example in examples if example is not None]
    if not labelled:
        raise DataError(f"{display_path(path)}: the file has no labelled examples")
    return labelled
