from collections import Counter

from forgeline.data import stratified_split


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
