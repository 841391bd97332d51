"""The project's labelled entities as train/validation/test frames, with warnings about what
the data will do to the model."""

from __future__ import annotations

from collections import Counter

import pandas as pd

from forgeline.config.entities import TokenClassificationConfig
from forgeline.config.load import Project
from forgeline.data import fingerprint_files, split_frames
from forgeline.data.io import display_path
from forgeline.errors import DataError
from forgeline.tasks.base import DataSplits
from forgeline.tasks.token_classification.formats import LabelledText, read_labelled_texts

TEXT = "text"
ENTITIES = "entities"
WORDS = "words"
"""A token-per-line file's own tokens (character spans); None for texts with spans."""

_MAX_LISTED = 10


def frame_of(texts: list[LabelledText]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            TEXT: [t.text for t in texts],
            ENTITIES: [t.entities for t in texts],
            WORDS: [t.words for t in texts],
        }
    )


def entity_types(frame: pd.DataFrame) -> list[str]:
    """The entity types of a frame, sorted."""
    return sorted({entity.label for entities in frame[ENTITIES] for entity in entities})


def _type_counts(frame: pd.DataFrame) -> Counter[str]:
    return Counter(entity.label for entities in frame[ENTITIES] for entity in entities)


def _warnings(splits: dict[str, pd.DataFrame]) -> list[str]:
    warnings = []
    trained = _type_counts(splits["train"])
    for name in ("validation", "test"):
        unseen = sorted(set(_type_counts(splits[name])) - set(trained))
        if unseen:
            warnings.append(
                f"{name} set has entity type(s) never seen in training, never found: "
                + ", ".join(unseen[:_MAX_LISTED])
            )
        duplicated = set(splits[name][TEXT]) & set(splits["train"][TEXT])
        if duplicated:
            warnings.append(
                f"leakage: {len(duplicated)} text(s) in the {name} set also appear in the "
                f"training set, which inflates {name} scores"
            )
    rare = sorted(kind for kind, n in trained.items() if n < 5)
    if rare:
        warnings.append(
            "entity type(s) with fewer than 5 training examples, unlikely to be learnt: "
            + ", ".join(f"{kind} ({trained[kind]})" for kind in rare[:_MAX_LISTED])
        )
    return warnings


def prepare_entity_data(project: Project) -> DataSplits:
    config = project.config_for(TokenClassificationConfig)
    data = config.data
    files = project.data_files()
    frames = {
        role: frame_of(
            read_labelled_texts(path, data.text_format(), data.text_field, data.entities_field)
        )
        for role, path in files.items()
    }
    splits = split_frames(frames, None, data.split)
    if not _type_counts(splits["train"]):
        raise DataError(
            f"{display_path(data.train)}: no entities in the training data; a token "
            "classifier learns from labelled entities"
        )
    settings = (
        f"{data.text_field}|{data.entities_field}|{data.split.model_dump_json()}|{data.encoding}"
    )
    return DataSplits(
        train=splits["train"],
        validation=splits["validation"],
        test=splits["test"],
        fingerprint=fingerprint_files(files, settings),
        warnings=_warnings(splits),
    )
