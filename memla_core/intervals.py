"""Bootstrap confidence intervals for a mean over facts: numbers in, numbers out, seeded."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

DEFAULT_RESAMPLES = 2000
CONFIDENCE = 0.95


def bootstrap_interval(
    values: Sequence[float], confidence: float = CONFIDENCE, resamples: int = DEFAULT_RESAMPLES, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (NaNs left out).

    ``resamples`` means of samples drawn with replacement, ``numpy.random.default_rng(seed)``: the
    same values and seed always give the same interval. Empty input gives (NaN, NaN); one value
    gives it twice (no spread can be estimated from one fact — the app flags such cells by n).
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1 (got {confidence}); 0.95 is the usual choice.")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1 (got {resamples}).")
    data = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
    if data.size == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(resamples, data.size))].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)
