"""Agreeing one schema across silos: levels united, fill values weighted, differences named."""

from __future__ import annotations

import pytest
from flwr.clientapp import ClientApp

from forgeline.errors import DataError
from forgeline.federated.grid import InProcessGrid, MeteredGrid
from forgeline.federated.schema import SiloSchema, agree
from forgeline.federated.server import _admit
from forgeline.tasks.tabular.columns import Column


def _silo(
    name: str, rows: int, *columns: Column, classes: tuple[str, str] = ("yes", "no")
) -> SiloSchema:
    return SiloSchema(
        name, classes, rows, list(columns), train_events=rows // 4, validation_rows=rows // 9
    )


def test_levels_are_united_and_medians_weighted_by_rows() -> None:
    agreed = agree(
        [
            _silo(
                "a",
                100,
                Column("home", "categorical", ["own", "rent"]),
                Column("age", "numeric", median=30),
            ),
            _silo(
                "b",
                300,
                Column("home", "categorical", ["mortgage", "rent"]),
                Column("age", "numeric", median=50),
            ),
        ]
    )
    home, age = agreed.columns
    assert home.categories == ["mortgage", "own", "rent"]
    assert age.median == pytest.approx((100 * 30 + 300 * 50) / 400)
    assert agreed.classes == ("yes", "no")


def test_a_silo_whose_numbers_are_all_zero_or_one_agrees_on_numeric() -> None:
    agreed = agree(
        [
            _silo("a", 10, Column("late", "numeric", median=2)),
            _silo("b", 10, Column("late", "boolean")),
        ]
    )
    assert agreed.columns[0].kind == "numeric"


def test_differences_are_named() -> None:
    reference = _silo("a", 10, Column("age", "numeric"), Column("home", "categorical", ["own"]))
    with pytest.raises(
        DataError, match=r"silo 'b' has other feature columns.*lacks 'home'.*has 'region'"
    ):
        agree(
            [reference, _silo("b", 10, Column("age", "numeric"), Column("region", "categorical"))]
        )
    with pytest.raises(DataError, match=r"silo 'c' has target values '1' \(event\) and '0'"):
        agree([reference, _silo("c", 10, *reference.columns, classes=("1", "0"))])
    with pytest.raises(
        DataError, match=r"column 'home' is read differently.*'b' numeric.*data.columns.home"
    ):
        agree([reference, _silo("b", 10, Column("age", "numeric"), Column("home", "numeric"))])


def test_silos_not_configured_or_named_twice_are_refused() -> None:
    grid = MeteredGrid(InProcessGrid(ClientApp(), {}))
    table = [Column("age", "numeric")]
    schemas = {
        2: _silo("a", 100, *table),
        3: _silo("b", 100, *table),
        4: _silo("a", 100, *table),
        5: _silo("mallory", 100, *table),
    }
    refused = _admit(grid, schemas, {"a", "b"})
    assert refused == {
        "a (node 4)": "a second node calls itself 'a'",
        "mallory": "silo 'mallory' is not in federated.silos",
    }
    assert grid.refused == {4, 5}
