"""Agreeing one input schema across silos without sharing rows.

Each silo infers its columns from its own training rows, as ``forgeline train`` would, and sends
only the result: names, kinds, category levels and a median per numeric column. The server
checks that the silos describe the same table and the same target, and agrees the levels (their
union) and the fill value of a missing number (the row-weighted mean of the silos' medians:
the pooled median would need the rows themselves).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forgeline.config.schema import TabularDataConfig
from forgeline.data import Table
from forgeline.errors import DataError
from forgeline.federated.silos import SiloData
from forgeline.tasks.tabular.columns import Column, Kind
from forgeline.tasks.tabular.data import EVENT, select_features


@dataclass(frozen=True)
class SiloSchema:
    """What one silo says about its table."""

    silo: str
    classes: tuple[str, str]
    train_rows: int
    columns: list[Column]
    train_events: int
    validation_rows: int

    def to_json(self) -> dict[str, Any]:
        return {
            "silo": self.silo,
            "classes": list(self.classes),
            "train_rows": self.train_rows,
            "train_events": self.train_events,
            "validation_rows": self.validation_rows,
            "columns": [c.to_json() for c in self.columns],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SiloSchema:
        event, non_event = data["classes"]
        columns = [Column(**c) for c in data["columns"]]
        return cls(
            silo=data["silo"],
            classes=(event, non_event),
            train_rows=data["train_rows"],
            columns=columns,
            train_events=data["train_events"],
            validation_rows=data["validation_rows"],
        )


@dataclass(frozen=True)
class AgreedSchema:
    classes: tuple[str, str]
    columns: list[Column]

    def to_json(self) -> dict[str, Any]:
        return {"classes": list(self.classes), "columns": [c.to_json() for c in self.columns]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AgreedSchema:
        event, non_event = data["classes"]
        return cls((event, non_event), [Column(**c) for c in data["columns"]])


def describe_silo(silo: SiloData, data: TabularDataConfig) -> SiloSchema:
    """The silo's own view of its table (its rows stay where they are)."""
    features = select_features(Table(silo.train, Path(silo.source)), data)
    events = int(silo.train[EVENT].sum())
    return SiloSchema(
        silo=silo.name,
        classes=silo.classes,
        train_rows=len(silo.train),
        columns=features.columns,
        train_events=events,
        validation_rows=len(silo.validation),
    )


def _names(schemas: list[SiloSchema]) -> list[str]:
    first = schemas[0]
    expected = [c.name for c in first.columns]
    for other in schemas[1:]:
        names = [c.name for c in other.columns]
        missing = [n for n in expected if n not in names]
        extra = [n for n in names if n not in expected]
        if missing or extra:
            parts = [f"lacks {', '.join(map(repr, missing))}"] if missing else []
            parts += [f"has {', '.join(map(repr, extra))} besides"] if extra else []
            raise DataError(
                f"silo '{other.silo}' has other feature columns than silo '{first.silo}': it "
                + " and ".join(parts)
                + "; every silo must send the same table (set data.drop or data.columns to agree)"
            )
    return expected


def _kind(name: str, columns: dict[str, Column]) -> Kind:
    kinds: set[Kind] = {c.kind for c in columns.values()}
    if len(kinds) == 1:
        return kinds.pop()
    if kinds == {"numeric", "boolean"}:
        return "numeric"  # a silo whose numbers are all 0 or 1 reads them as yes/no
    described = ", ".join(f"'{silo}' {c.kind}" for silo, c in columns.items())
    raise DataError(
        f"column '{name}' is read differently by the silos ({described}); set "
        f"data.columns.{name} to the kind it is"
    )


def agree(schemas: list[SiloSchema]) -> AgreedSchema:
    """One schema for every silo, or an error naming the silo and the difference."""
    first = schemas[0]
    for other in schemas[1:]:
        if other.classes != first.classes:
            raise DataError(
                f"silo '{other.silo}' has target values {other.classes[0]!r} (event) and "
                f"{other.classes[1]!r}, silo '{first.silo}' {first.classes[0]!r} and "
                f"{first.classes[1]!r}; every silo must label the target the same way (set "
                "data.positive)"
            )
    agreed = []
    for name in _names(schemas):
        by_silo = {s.silo: next(c for c in s.columns if c.name == name) for s in schemas}
        kind = _kind(name, by_silo)
        rows = sum(s.train_rows for s in schemas)
        median = sum(by_silo[s.silo].median * s.train_rows for s in schemas) / max(rows, 1)
        levels = sorted({level for c in by_silo.values() for level in c.categories})
        expressions = {c.expression for c in by_silo.values()}
        agreed.append(
            Column(
                name=name,
                kind=kind,
                categories=levels if kind == "categorical" else [],
                median=median,
                expression=expressions.pop() if len(expressions) == 1 else None,
            )
        )
    return AgreedSchema(first.classes, agreed)
