import pandas as pd
import pytest

from forgeline.data.values import parse_number
from forgeline.errors import InputError
from forgeline.tasks.tabular.columns import Column, check_input_row, infer_kind, looks_like_id


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        (["1", "2.5", "", "5.00E+05"], "numeric"),
        (["yes", "no", "NA", "Yes"], "boolean"),
        (["rent", "own", "1"], "categorical"),
        ([1, 2, None], "numeric"),
    ],
)
def test_infer_kind(values: list[object], kind: str) -> None:
    assert infer_kind(pd.Series(values)) == kind


def test_spreadsheet_numbers() -> None:
    assert parse_number("5.00E+05") == 500000.0
    assert parse_number(" 42 ") == 42.0
    assert parse_number("abc") is None
    assert parse_number("inf") is None


def test_id_detection() -> None:
    rows = 50
    assert looks_like_id("customer_id", pd.Series(["x"] * rows))
    assert looks_like_id("ref", pd.Series([f"R{i}" for i in range(rows)]))
    assert looks_like_id("row", pd.Series(range(rows)))
    assert not looks_like_id("amount", pd.Series([i + 0.5 for i in range(rows)]))
    assert not looks_like_id("age", pd.Series([20 + i % 30 for i in range(rows)]))


COLUMNS = [
    Column("age", "numeric"),
    Column("home", "categorical", categories=["own", "rent"]),
    Column("previous_default", "boolean"),
]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"age": 30, "home": "own"}, r"inputs\[0\]\.previous_default: required field is missing"),
        (
            {"age": 30, "home": "own", "previous_default": "no", "x": 1},
            r"inputs\[0\]\.x: unknown field",
        ),
        (
            {"age": "thirty", "home": "own", "previous_default": "no"},
            r"inputs\[0\]\.age: expected a number, got 'thirty'",
        ),
        (
            {"age": 30, "home": "own", "previous_default": "maybe"},
            r"previous_default: expected true or false",
        ),
        (
            {"age": 30, "home": ["own"], "previous_default": "no"},
            r"inputs\[0\]\.home: unknown category \['own'\]",
        ),
        (
            {"age": 30, "home": "castle", "previous_default": "no"},
            r"home: unknown category 'castle'; expected one of own, rent",
        ),
        (
            {"age": float("inf"), "home": "own", "previous_default": "no"},
            r"age: expected a number, got inf",
        ),
        ({"age": 30}, r"inputs\[0\]: required fields are missing: home, previous_default"),
        ("age=30", r"inputs\[0\]: expected an object of feature values, got str"),
    ],
)
def test_input_schema_is_enforced(row: object, message: str) -> None:
    with pytest.raises(InputError, match=message):
        check_input_row(0, row, COLUMNS)


def test_missing_values_pass_in_any_spelling() -> None:
    check_input_row(0, {"age": None, "home": "", "previous_default": True}, COLUMNS)
    check_input_row(0, {"age": "NA", "home": " rent ", "previous_default": None}, COLUMNS)


LEVELS = [*COLUMNS, Column("grade", "categorical", categories=["1", "2", "A"])]
REQUEST = {"age": 30, "home": "own", "previous_default": False, "grade": "A"}


@pytest.mark.parametrize(
    ("field", "value", "accepted"),
    [
        ("age", 30.5, True),
        ("age", None, True),
        ("age", "30", False),  # a JSON request sends numbers as numbers
        ("age", "NA", False),
        ("age", True, False),
        ("previous_default", "Yes", True),  # as the data files write it
        ("previous_default", "no", True),
        ("previous_default", "maybe", False),
        ("previous_default", 1, False),
        ("home", " rent ", False),  # a level exactly
        ("home", "", False),
        ("grade", 2, True),  # an integer-like level may come as its integer
        ("grade", 2.0, True),
        ("grade", 3, False),
        ("grade", True, False),
    ],
)
def test_json_requests_must_match_the_published_schema(
    field: str, value: object, accepted: bool
) -> None:
    """What check_inputs accepts from a request is exactly what input_schema publishes, so a
    client generated from the OpenAPI document is never refused, nor is anything else let in."""
    import jsonschema

    from forgeline.tasks.tabular.schemas import input_schema
    from forgeline.tasks.tabular.settings import TabularSettings

    settings = TabularSettings.__new__(TabularSettings)
    settings.columns = LEVELS
    row = {**REQUEST, field: value}
    valid = jsonschema.Draft202012Validator(input_schema(settings)).is_valid(row)
    try:
        check_input_row(0, row, LEVELS, strict=True)
        checked = True
    except InputError:
        checked = False
    assert (valid, checked) == (accepted, accepted)
