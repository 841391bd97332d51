"""Scorecard points: the usual scaling of odds to a score (e.g. 600 points at 50:1, +20 points
each time the odds of the non-event double)."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from forgeline.config.schema import ScorecardConfig

_EPSILON = 1e-9


def scale(config: ScorecardConfig) -> tuple[float, float]:
    """(offset, factor) with score = offset + factor * ln(good:bad odds)."""
    factor = config.points_to_double_odds / math.log(2)
    offset = config.base_score - factor * math.log(config.base_odds)
    return offset, factor


def points(event_probability: NDArray[np.float64], config: ScorecardConfig) -> NDArray[np.float64]:
    offset, factor = scale(config)
    p = np.clip(event_probability, _EPSILON, 1 - _EPSILON)
    return np.asarray(offset + factor * np.log((1 - p) / p), dtype=np.float64)
