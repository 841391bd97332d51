import json
from pathlib import Path

import pytest

from forgeline.data.io import TextFormat
from forgeline.errors import DataError
from forgeline.tasks.token_classification.formats import (
    Entity,
    LabelledText,
    normalize_tags,
    read_labelled_texts,
    spans_from_iob2,
)

PII_DATA = Path(__file__).parents[3] / "../shared/data/pii_synth_v2.json"


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Error messages name files relative to the working directory: keep them short."""
    monkeypatch.chdir(tmp_path)


def _write(name: str, content: str) -> Path:
    path = Path(name)
    path.write_bytes(content.encode("utf-8"))
    return path


def _read(name: str, content: str) -> list[LabelledText]:
    return read_labelled_texts(_write(name, content), TextFormat())


def _error(name: str, content: str) -> str:
    with pytest.raises(DataError) as caught:
        _read(name, content)
    return str(caught.value)


def _tags(tags: str) -> list[str]:
    split = tags.split()
    return normalize_tags(split, [f"line {n}" for n in range(1, len(split) + 1)])


def _jsonl(*records: object) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)


def _covered(example: LabelledText) -> list[tuple[str, str]]:
    return [(example.text[e.start : e.end], e.label) for e in example.entities]


# Tag schemes


def test_iob1_becomes_iob2() -> None:
    assert _tags("I-PER I-PER O I-LOC") == ["B-PER", "I-PER", "O", "B-LOC"]
    assert _tags("I-PER B-PER") == ["B-PER", "B-PER"]
    assert _tags("I-PER I-LOC I-LOC") == ["B-PER", "B-LOC", "I-LOC"]


def test_iob2_is_unchanged() -> None:
    tags = "B-PER I-PER O B-LOC B-LOC I-LOC O"
    assert _tags(tags) == tags.split()


def test_iobes_and_bilou_become_iob2() -> None:
    expected = ["B-PER", "I-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC"]
    assert _tags("B-PER I-PER E-PER O S-LOC B-LOC E-LOC") == expected
    assert _tags("B-PER I-PER L-PER O U-LOC B-LOC L-LOC") == expected


def test_iobes_closed_entities_are_not_continued() -> None:
    # After E- or S- the entity is over: a following I-/E- of the same type starts a new one.
    assert _tags("S-PER I-PER E-PER") == ["B-PER", "B-PER", "I-PER"]
    assert _tags("B-PER E-PER E-PER") == ["B-PER", "I-PER", "B-PER"]


def test_ill_formed_tag_names_its_line() -> None:
    with pytest.raises(DataError, match=r"line 2: ill-formed tag 'B_PER'"):
        _tags("O B_PER")


def test_spans_from_iob2() -> None:
    assert spans_from_iob2(["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-ORG"]) == [
        (0, 2, "PER"),
        (3, 4, "LOC"),
        (4, 5, "LOC"),
        (5, 6, "ORG"),
    ]
    assert spans_from_iob2([]) == []


# Token-per-line files


def test_conll_sentence_text_words_and_entities() -> None:
    examples = _read(
        "train.conll",
        "Empire\tB-location\nState\tI-location\nBuilding\tI-location\n=\tO\nESB\tB-location\n"
        "\nJohn\tB-person\nsays\tO\n",
    )
    first, second = examples
    assert first.text == "Empire State Building = ESB"
    assert first.words == ((0, 6), (7, 12), (13, 21), (22, 23), (24, 27))
    assert first.entities == (Entity(0, 21, "location"), Entity(24, 27, "location"))
    assert _covered(second) == [("John", "person")]


def test_iob1_and_iob2_files_give_the_same_entities() -> None:
    iob1 = _read("a.iob", "U.N.\tI-ORG\nofficial\tO\nEkeus\tI-PER\nheads\tO\n")
    iob2 = _read("b.bio", "U.N.\tB-ORG\nofficial\tO\nEkeus\tB-PER\nheads\tO\n")
    assert iob1[0].entities == iob2[0].entities
    assert _covered(iob1[0]) == [("U.N.", "ORG"), ("Ekeus", "PER")]


def test_iobes_file() -> None:
    (example,) = _read("x.txt", "New B-LOC\nYork E-LOC\nand O\nParis S-LOC\nParis S-LOC\n")
    assert _covered(example) == [("New York", "LOC"), ("Paris", "LOC"), ("Paris", "LOC")]


def test_conll2003_columns_docstart_and_crlf() -> None:
    content = (
        "-DOCSTART- -X- -X- O\n\n"
        "EU NNP B-NP I-ORG\nrejects VBZ B-VP O\nGerman JJ B-NP I-MISC\n\n"
        "-DOCSTART- -X- -X- O\n\n"
        "Peter NNP B-NP I-PER\nBlackburn NNP I-NP I-PER\n\n\n"
    ).replace("\n", "\r\n")
    first, second = _read("train.conll", content)
    assert first.text == "EU rejects German"
    assert _covered(first) == [("EU", "ORG"), ("German", "MISC")]
    assert second.text == "Peter Blackburn"
    assert _covered(second) == [("Peter Blackburn", "PER")]


def test_byte_order_mark_and_unusual_tokens() -> None:
    (example,) = read_labelled_texts(
        _write("zh.tsv", "\ufeff看\tB-PER\n\u200b\tO\n好  \tO\n"), TextFormat()
    )
    assert example.text == "看 \u200b 好"
    assert _covered(example) == [("看", "PER")]


def test_one_column_and_ill_formed_tags_are_listed_together() -> None:
    message = _error("train.conll", "John\tB-PER\nsays\n\nMary B_PER\nleft O\n")
    assert message.startswith("2 invalid line(s):")
    assert "train.conll, line 2: expected a token and a tag separated by a tab or spaces" in message
    assert "train.conll, line 4: ill-formed tag 'B_PER'; expected O, or B-, I-, E-, S-" in message


def test_at_most_ten_problems_are_listed() -> None:
    message = _error("train.conll", "word\n" * 12)
    assert message.startswith("12 invalid line(s):")
    assert "line 10:" in message
    assert "line 11:" not in message
    assert message.endswith("... and 2 more")


def test_empty_and_unsupported_files() -> None:
    assert "no labelled examples" in _error("empty.conll", "-DOCSTART- O\n\n\n")
    assert "no labelled examples" in _error("empty.jsonl", "\n")
    assert "use one of .conll" in _error("data.csv", "text,label\n")
    with pytest.raises(DataError, match=r"no such file 'missing\.conll'"):
        read_labelled_texts(Path("missing.conll"), TextFormat())


def test_bad_encoding_names_the_line() -> None:
    Path("latin.conll").write_bytes("a\tO\n\nCaf\u00e9\tB-ORG\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin\.conll, line 3: not utf-8 text"):
        read_labelled_texts(Path("latin.conll"), TextFormat())
    (example,) = read_labelled_texts(Path("latin.conll"), TextFormat(encoding="latin-1"))[1:]
    assert _covered(example) == [("Café", "ORG")]


# JSON Lines


def test_jsonl_valid_with_plain_and_presidio_entities() -> None:
    first, second = _read(
        "train.jsonl",
        _jsonl(
            {
                "text": "Anna lives in Oslo",
                "entities": [
                    {"start": 14, "end": 18, "label": "city"},
                    {"start": 0, "end": 4, "label": "person"},
                ],
            },
        )
        + "\n"
        + _jsonl(
            {
                "text": "Call 555-0100",
                "entities": [{"entity_type": "PHONE", "start_position": 5, "end_position": 13}],
            }
        ),
    )
    assert first.entities == (Entity(0, 4, "person"), Entity(14, 18, "city"))
    assert first.words is None
    assert _covered(second) == [("555-0100", "PHONE")]


def test_jsonl_custom_field_names() -> None:
    path = _write("x.jsonl", _jsonl({"sentence": "Hi Bo", "spans": []}))
    with pytest.raises(DataError, match="line 1: field 'text' is missing"):
        read_labelled_texts(path, TextFormat())
    (example,) = read_labelled_texts(path, TextFormat(), "sentence", "spans")
    assert example.text == "Hi Bo"
    assert example.entities == ()


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('{"text": "a", ', "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"entities": []}', "field 'text' is missing"),
        ('{"text": "  ", "entities": []}', "field 'text' is empty"),
        ('{"text": 5, "entities": []}', "field 'text' is not a string"),
        ('{"text": "abc"}', "field 'entities' is missing"),
        ('{"text": "abc", "entities": {}}', "field 'entities' is not a list"),
        ('{"text": "abc", "entities": [{"start": 0, "end": 1}]}', "entity 1: missing 'label'"),
        ('{"text": "abc", "entities": [5]}', "entity 1: expected an object"),
        (
            '{"text": "abc", "entities": [{"start": 0.0, "end": 1, "label": "x"}]}',
            "entity 1: offsets must be whole numbers",
        ),
        (
            '{"text": "abc", "entities": [{"start": true, "end": 1, "label": "x"}]}',
            "entity 1: offsets must be whole numbers",
        ),
        (
            '{"text": "abc", "entities": [{"start": 2, "end": 2, "label": "x"}]}',
            "entity 1: start 2 is not before end 2",
        ),
        (
            '{"text": "abc", "entities": [{"start": 1, "end": 4, "label": "x"}]}',
            "entity 1: span 1-4 is outside the text (3 characters)",
        ),
        (
            '{"text": "abc", "entities": [{"start": -1, "end": 2, "label": "x"}]}',
            "entity 1: span -1-2 is outside the text",
        ),
        (
            '{"text": "abc", "entities": [{"start": 0, "end": 1, "label": " "}]}',
            "entity 1: empty label",
        ),
        (
            '{"text": "a  b", "entities": [{"start": 1, "end": 3, "label": "x"}]}',
            "entity 1: span 1-3 covers only whitespace",
        ),
    ],
)
def test_jsonl_errors_name_the_line(line: str, problem: str) -> None:
    good = _jsonl({"text": "fine", "entities": []})
    message = _error("train.jsonl", good + "\n" + line + "\n")
    assert message.startswith("1 invalid line(s):")
    assert f"train.jsonl, line 3: {problem}" in message


def test_jsonl_overlapping_spans() -> None:
    record = {
        "text": "0123456789abcdef",
        "entities": [
            {"start": 3, "end": 9, "label": "a"},
            {"start": 10, "end": 12, "label": "b"},
            {"start": 4, "end": 5, "label": "c"},
            {"start": 8, "end": 11, "label": "d"},
        ],
    }
    message = _error("train.jsonl", _jsonl(record))
    assert "train.jsonl, line 1: the entity at 4-5 overlaps the entity at 3-9" in message
    assert "the entity at 8-11 overlaps the entity at 3-9" in message
    assert "the entity at 10-12 overlaps the entity at 8-11" in message


def test_spans_are_trimmed_of_surrounding_whitespace() -> None:
    (example,) = _read(
        "x.jsonl",
        _jsonl(
            {
                "text": "Send it to \n Anna Berg  today",
                "entities": [{"start": 10, "end": 24, "label": "person"}],
            }
        ),
    )
    assert example.entities == (Entity(13, 22, "person"),)


# JSON (Presidio-style PII records)


def test_pii_json_records() -> None:
    records = [
        {
            "full_text": "Mail ann@x.org or call Ann Lee",
            "masked": "...",
            "spans": [
                {
                    "entity_type": "PERSON",
                    "entity_value": "Ann Lee",
                    "start_position": 23,
                    "end_position": 30,
                },
                {
                    "entity_type": "EMAIL_ADDRESS",
                    "entity_value": "ann@x.org",
                    "start_position": 5,
                    "end_position": 14,
                },
            ],
            "template_id": 3,
            "metadata": None,
        },
        {"full_text": "Nothing here", "spans": []},
        {"text": "Oslo", "entities": [{"start": 0, "end": 4, "label": "city"}]},
    ]
    first, second, third = _read("pii.json", json.dumps(records, indent=1))
    assert _covered(first) == [("ann@x.org", "EMAIL_ADDRESS"), ("Ann Lee", "PERSON")]
    assert second.entities == ()
    assert _covered(third) == [("Oslo", "city")]


def test_pii_json_entity_value_mismatch_and_record_numbers() -> None:
    span = {"entity_type": "PERSON", "entity_value": "Ann", "start_position": 0, "end_position": 3}
    records = [
        {"full_text": "Ann is here", "spans": [span]},
        {"full_text": "Bob is here", "spans": [span]},
        "not a record",
    ]
    message = _error("pii.json", json.dumps(records))
    assert message.startswith("2 invalid record(s):")
    assert (
        "pii.json, record 2: entity 1: entity_value is not the text at 0-3: they differ from "
        "its character 1 on (3 and 3 characters)" in message
    )
    assert "pii.json, record 3: expected a JSON object" in message


def test_json_must_be_a_valid_list() -> None:
    assert "pii.json: expected a JSON list of records, found a dict" in _error("pii.json", "{}")
    assert "pii.json, line 2: not valid JSON" in _error("pii.json", "[\n{]")


@pytest.mark.skipif(not PII_DATA.is_file(), reason="shared PII data set not present")
def test_reads_the_shared_pii_data_set() -> None:
    examples = read_labelled_texts(PII_DATA.resolve(), TextFormat())
    assert len(examples) == 1500
    assert sum(len(example.entities) for example in examples) == 2863
    assert sum(1 for example in examples if not example.entities) == 113
    for example in examples:
        ends = [entity.end for entity in example.entities]
        starts = [entity.start for entity in example.entities]
        assert all(end <= start for end, start in zip(ends, starts[1:], strict=False))
    first = examples[0]
    assert _covered(first)[0] == ("Persint", "ORGANIZATION")


def test_a_line_with_another_number_of_columns_is_an_error() -> None:
    Path("shifted.conll").write_text("Anna\tNNP\tB-PER\nLopez\tI-PER\n\nhi\t\tO\n")
    with pytest.raises(DataError, match=r"shifted.conll, line 2: 2 columns where line 1 has 3"):
        read_labelled_texts(Path("shifted.conll"), TextFormat())
