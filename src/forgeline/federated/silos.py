"""A silo's data: the rows one party holds, split into train, validation and test.

In a real federation each client reads only its own file (:func:`read_silo`). A simulation on
one machine may instead cut ``data.train`` into the groups of a column (:func:`simulated_silos`):
the file is split into train, validation and test first, exactly as ``forgeline train`` splits it,
so ``forgeline evaluate`` later measures the federated model on the same test rows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pandas as pd

from forgeline.config import Project, TabularClassificationConfig
from forgeline.config.federated import FederatedConfig
from forgeline.data import fingerprint_files, read_table, split_frames
from forgeline.data.io import SUPPORTED_SUFFIXES, display_path
from forgeline.data.values import category_key, is_missing
from forgeline.errors import ConfigError, DataError
from forgeline.tasks.tabular.data import EVENT, prepare_tabular_data, target_classes, with_event


@dataclass(frozen=True)
class SiloData:
    """One silo's rows split three ways, the target as ``EVENT`` (1 for the event, else 0)."""

    name: str
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    classes: tuple[str, str]
    """(event, non-event) as the silo's target column writes them."""
    source: str
    """Where the rows came from, for messages."""


def federation_config(project: Project) -> tuple[TabularClassificationConfig, FederatedConfig]:
    """The project's config and its ``federated:`` section, or an error saying it has none."""
    config = project.config
    federated = getattr(config, "federated", None)
    if not isinstance(config, TabularClassificationConfig) or federated is None:
        raise ConfigError(
            f"{project.config_file}: no federated: section; federated training is offered for "
            "tabular-classification projects with model.kind: logistic"
        )
    return config, federated


def read_silo(project: Project, name: str) -> SiloData:
    """Silo ``name``'s own file (``federated.silos``), split by ``data.split``."""
    config, federated = federation_config(project)
    if name not in federated.silos:
        known = ", ".join(federated.silos) or "none (the config splits data.train by a column)"
        raise ConfigError(f"{project.config_file}: no silo '{name}' in federated.silos: {known}")
    path = project.resolve(federated.silos[name])
    if not path.is_file():
        raise ConfigError(f"federated.silos.{name}: no such file '{display_path(path)}'")
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise ConfigError(
            f"federated.silos.{name}: unsupported file type '{path.suffix}'; use one of "
            f"{', '.join(SUPPORTED_SUFFIXES)}"
        )
    table = read_table(path, config.data.text_format())
    frame, classes = with_event(table, config.data, None)
    parts = split_frames({"train": frame}, EVENT, config.data.split)
    return SiloData(
        name, parts["train"], parts["validation"], parts["test"], classes, display_path(path)
    )


def silo_name(column: str, value: str) -> str:
    """A silo name for the rows whose ``column`` holds ``value``: ``region-north``."""
    slug = re.sub(r"[^a-z0-9._-]+", "-", f"{column}-{value}".lower()).strip("-._")
    return slug[:64] or "silo"


def simulated_silos(project: Project) -> tuple[list[SiloData], dict[str, Any]]:
    """Every silo of the simulation, the configured files or ``data.train`` cut by
    ``federated.split_by`` after the train/validation/test split; and the data's fingerprint
    (for ``split_by``, the one ``forgeline train`` and ``evaluate`` compute)."""
    config, federated = federation_config(project)
    if federated.split_by is None:
        files = {f"silo:{name}": project.resolve(path) for name, path in federated.silos.items()}
        silos = [read_silo(project, name) for name in federated.silos]
        return silos, fingerprint_files(files, config.data.model_dump_json())
    column = federated.split_by
    # The same split as `forgeline train` makes, so `forgeline evaluate` tests the federated
    # model on the rows the simulation reported on.
    splits = prepare_tabular_data(project)
    classes = target_classes(project)
    if column not in splits.train.columns:
        raise ConfigError(
            f"federated.split_by: no column '{column}' in {display_path(project.data_files()['train'])}"
        )
    parts = {"train": splits.train, "validation": splits.validation, "test": splits.test}
    keyed = {
        role: [None if is_missing(v) else category_key(v) for v in part[column]]
        for role, part in parts.items()
    }
    unassigned = sum(key is None for keys in keyed.values() for key in keys)
    if unassigned:
        raise DataError(
            f"federated.split_by: {unassigned} row(s) have no value in column '{column}' to "
            "assign a silo by"
        )
    values = sorted({key for keys in keyed.values() for key in keys if key is not None})
    if len(values) < 2:
        raise DataError(f"federated.split_by: column '{column}' has one value; no federation")
    silos = []
    for value in values:
        rows = {
            role: part[[key == value for key in keyed[role]]].reset_index(drop=True)
            for role, part in parts.items()
        }
        silos.append(
            SiloData(
                silo_name(column, value),
                rows["train"],
                rows["validation"],
                rows["test"],
                classes,
                f"{display_path(project.data_files()['train'])} ({column} = {value})",
            )
        )
    return silos, splits.fingerprint
