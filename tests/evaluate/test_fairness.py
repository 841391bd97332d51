"""Fairness across groups: binary decisions (tabular) and multi-class labels (text)."""

import numpy as np
import pandas as pd
import pytest

from forgeline.evaluate.fairness import binary_fairness, multiclass_fairness


def test_fairness_numbers_match_a_hand_computation() -> None:
    #            group a (4 rows)   group b (4 rows)
    events = np.array([1, 1, 0, 0, 1, 0, 0, 0])
    decisions = np.array([1, 0, 1, 0, 1, 1, 1, 0])
    probability = np.array([0.9, 0.4, 0.6, 0.1, 0.8, 0.7, 0.6, 0.2])
    groups = pd.DataFrame({"sex": ["a"] * 4 + ["b"] * 4})
    [result] = binary_fairness(events, decisions, probability, groups, min_group_size=1)
    table = result.by_group.set_index("group")
    # Selection rate: a 2/4, b 3/4. TPR: a 1/2, b 1/1. FPR: a 1/2, b 2/3.
    assert table.loc["a", "selection_rate"] == pytest.approx(0.5)
    assert table.loc["b", "selection_rate"] == pytest.approx(0.75)
    assert table.loc["a", "tpr"] == pytest.approx(0.5)
    assert table.loc["b", "tpr"] == pytest.approx(1.0)
    assert table.loc["a", "fpr"] == pytest.approx(0.5)
    assert table.loc["b", "fpr"] == pytest.approx(2 / 3)
    # AUC: a ranks (0.9, 0.4) vs (0.6, 0.1): 3 of 4 pairs right; b: 0.8 above all 3 negatives.
    assert table.loc["a", "auc"] == pytest.approx(0.75)
    assert table.loc["b", "auc"] == pytest.approx(1.0)
    assert table.loc["a", "count"] == 4
    assert result.demographic_parity_difference == pytest.approx(0.25)
    # Equalized odds difference: the larger of the TPR gap (0.5) and the FPR gap (1/6).
    assert result.equalized_odds_difference == pytest.approx(0.5)
    assert result.warnings(0.3) == ["sex: equalized odds difference 0.500 exceeds the bound 0.300"]


def test_group_accuracy_by_hand() -> None:
    truth = ["a", "b", "a", "b", "a", "b"]
    predicted = ["a", "b", "b", "b", "a", "a"]
    groups = pd.DataFrame({"region": ["north", "north", "north", "south", "south", "south"]})
    [result] = multiclass_fairness(truth, predicted, groups, min_group_size=1)
    table = result.by_group.set_index("group")
    assert table.loc["north", "accuracy"] == pytest.approx(2 / 3)
    assert table.loc["south", "accuracy"] == pytest.approx(2 / 3)
    # north: a F1 = 2/3, b F1 = 2/3; south: a F1 = 2/3 (p 1/2, r 1), b F1 = 2/3 (p 1, r 1/2).
    assert result.accuracy_difference == pytest.approx(0.0)
    assert result.warnings(0.1) == []
    worse = multiclass_fairness(truth, ["a", "b", "a", "a", "b", "a"], groups, min_group_size=1)[0]
    # north all right (1.0), south all wrong (0.0).
    assert worse.accuracy_difference == pytest.approx(1.0)
    assert worse.warnings(0.1)[0] == "region: accuracy difference 1.000 exceeds the bound 0.100"


def test_small_groups_are_shown_but_left_out_of_the_differences() -> None:
    rng = np.random.default_rng(0)
    events = rng.integers(0, 2, 203)
    decisions = events.copy()  # perfect decisions in the two large groups...
    decisions[-3:] = 1 - events[-3:]  # ...and all wrong in a group of 3
    groups = pd.DataFrame({"education": ["1"] * 100 + ["2"] * 100 + ["6"] * 3})
    [result] = binary_fairness(events, decisions, events.astype(float), groups)
    assert result.by_group.set_index("group").loc["6", "count"] == 3
    assert result.equalized_odds_difference == pytest.approx(0.0)
    assert result.small_groups == ["6"]
    assert result.warnings(0.1) == [
        "education: group 6 has fewer than 30 rows; shown, but left out of the differences"
    ]
    [accuracy] = multiclass_fairness([str(e) for e in events], [str(d) for d in decisions], groups)
    assert accuracy.accuracy_difference == pytest.approx(0.0)
    assert accuracy.small_groups == ["6"]
    first = slice(0, 103)  # group "1" and 3 rows of group "2"
    [alone] = binary_fairness(
        events[first], decisions[first], events[first].astype(np.float64), groups[first]
    )
    assert np.isnan(alone.demographic_parity_difference)  # one counted group: no difference
    assert alone.warnings(0.1) == [
        "education: group 2 has fewer than 30 rows; shown, but left out of the differences",
        "education: no difference computed: fewer than 2 groups have 30 rows",
    ]
