import math

import numpy as np
import pytest

from forgeline.config.schema import ScorecardConfig
from forgeline.tasks.tabular.calibration import brier, choose_calibrator, sigmoid
from forgeline.tasks.tabular.scorecard import points, scale


def test_scorecard_scaling_by_hand() -> None:
    config = ScorecardConfig(base_score=600, base_odds=50, points_to_double_odds=20)
    offset, factor = scale(config)
    assert factor == pytest.approx(20 / math.log(2))  # 28.8539...
    assert offset == pytest.approx(600 - 28.853900817779268 * math.log(50))  # 487.1229...
    # Odds of 50:1 (p = 1/51) score the base; doubling the odds adds 20 points.
    p = np.array([1 / 51, 1 / 101, 1 / 2])
    assert points(p, config) == pytest.approx([600.0, 620.0, 600 - 20 * math.log2(50)], abs=1e-6)


def test_calibration_improves_brier_on_a_skewed_set() -> None:
    rng = np.random.default_rng(0)
    true_margin = rng.normal(-2.5, 1.2, 20_000)  # about 10% events
    events = (rng.random(true_margin.size) < sigmoid(true_margin)).astype(np.int64)
    # A class-weighted model: over-confident and shifted towards the rare class.
    distorted = 2.0 * true_margin + 3.0
    calibrator, scores = choose_calibrator("auto", distorted, events, seed=0)
    before = brier(sigmoid(distorted), events)
    after = brier(calibrator.probability(distorted), events)
    assert set(scores) == {"platt", "isotonic"}
    assert after < 0.8 * before
    assert calibrator.probability(distorted).mean() == pytest.approx(events.mean(), abs=0.01)


def test_auto_calibration_keeps_to_platt_on_a_small_validation_set() -> None:
    rng = np.random.default_rng(2)
    true_margin = rng.normal(-1.5, 1.5, 600)
    events = (rng.random(600) < sigmoid(true_margin)).astype(np.int64)
    calibrator, scores = choose_calibrator("auto", 2.0 * true_margin + 1, events, seed=0)
    # Isotonic steps fitted on 600 rows would give whole slices of applicants one probability.
    assert calibrator.method == "platt" and scores == {}
    assert len(np.unique(calibrator.probability(true_margin))) == len(np.unique(true_margin))


@pytest.mark.parametrize("method", ["platt", "isotonic", "none"])
def test_calibrator_round_trips_through_json(method: str) -> None:
    from forgeline.tasks.tabular.calibration import Calibrator

    rng = np.random.default_rng(1)
    margin = rng.normal(size=500)
    events = (rng.random(500) < sigmoid(margin)).astype(np.int64)
    calibrator, _ = choose_calibrator(method, margin, events, seed=0)  # type: ignore[arg-type]
    again = Calibrator.from_json(calibrator.to_json())
    assert again.probability(margin) == pytest.approx(calibrator.probability(margin))
