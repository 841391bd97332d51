from collections import Counter

import pandas as pd

from forgeline.config.project import SplitConfig
from forgeline.data import split_frames, stratified_split


def test_split_is_disjoint_complete_and_stratified() -> None:
    labels = ["a"] * 50 + ["b"] * 30 + ["c"] * 20
    train, val, test = stratified_split(labels, validation=0.1, test=0.2, seed=1)
    assert sorted(train + val + test) == list(range(100))
    assert Counter(labels[i] for i in test) == {"a": 10, "b": 6, "c": 4}
    assert Counter(labels[i] for i in val) == {"a": 5, "b": 3, "c": 2}


def test_split_is_seeded() -> None:
    labels = ["a", "b"] * 40
    assert stratified_split(labels, 0.1, 0.1, seed=3) == stratified_split(labels, 0.1, 0.1, seed=3)
    assert stratified_split(labels, 0.1, 0.1, seed=3) != stratified_split(labels, 0.1, 0.1, seed=4)


def test_rare_label_stays_in_training() -> None:
    labels = ["a"] * 20 + ["rare"]
    train, val, test = stratified_split(labels, 0.2, 0.2, seed=0)
    assert 20 in train
    assert 20 not in val + test


def test_a_test_file_without_validation_gets_validation_carved_from_train() -> None:
    train = pd.DataFrame({"text": [f"t{i}" for i in range(100)], "label": ["a", "b"] * 50})
    test = pd.DataFrame({"text": ["x", "y"], "label": ["a", "b"]})
    split = SplitConfig(validation=0.2, test=0.1, seed=3)
    frames = split_frames({"train": train, "test": test}, "label", split)
    assert frames["test"] is test  # the given file, untouched: nothing else is carved for it
    assert len(frames["validation"]) == 20 and len(frames["train"]) == 80
    assert Counter(frames["validation"]["label"]) == {"a": 10, "b": 10}
    assert set(frames["train"]["text"]).isdisjoint(frames["validation"]["text"])
    again = split_frames({"train": train, "test": test}, "label", split)
    assert again["validation"]["text"].tolist() == frames["validation"]["text"].tolist()


def test_a_validation_file_without_test_gets_test_carved_and_unstratified_works() -> None:
    train = pd.DataFrame({"messages": list(range(50))})
    validation = pd.DataFrame({"messages": [99]})
    frames = split_frames(
        {"train": train, "validation": validation}, None, SplitConfig(validation=0.1, test=0.2)
    )
    assert frames["validation"] is validation
    assert len(frames["test"]) == 10 and len(frames["train"]) == 40
