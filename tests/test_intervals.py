"""Bootstrap intervals and per-cell statistics against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from memla_core.bench.uncertainty import avg_label, cell_statistics
from memla_core.charts import difference_heatmap, score_heatmap
from memla_core.intervals import bootstrap_interval


def test_interval_of_one_hit_in_ten_matches_the_binomial_by_hand():
    # Resampled mean of [100, 0 × 9] = 10 · X with X ~ Binomial(10, 0.1):
    # P(X = 0) = 0.9^10 = 0.349 > 0.025, so the 2.5 % quantile is 0;
    # P(X ≤ 2) = 0.930 < 0.975 ≤ P(X ≤ 3) = 0.987, so the 97.5 % quantile is 30.
    assert bootstrap_interval([100.0] + [0.0] * 9, resamples=20000, seed=3) == (0.0, 30.0)


def test_interval_of_two_facts_by_hand():
    # Means of two draws from {0, 100}: 0, 50, 100 with probability 1/4, 1/2, 1/4 -> [0, 100];
    # at 40 % confidence the quantiles 0.3 and 0.7 both fall on 50.
    assert bootstrap_interval([0.0, 100.0], resamples=20000, seed=1) == (0.0, 100.0)
    assert bootstrap_interval([0.0, 100.0], confidence=0.4, resamples=20000, seed=1) == (50.0, 50.0)


def test_interval_follows_the_seeded_resampling_exactly():
    values = [10.0, 40.0, 70.0]
    # The same draws by hand: rows of indices from default_rng(7), their means, the quantiles.
    draws = np.random.default_rng(7).integers(0, 3, size=(5, 3))
    means = sorted(np.asarray(values)[draws].mean(axis=1))
    # 5 resamples: the 2.5 % quantile lies 0.1 of the way from the 1st to the 2nd sorted mean.
    low = means[0] + 0.1 * (means[1] - means[0])
    high = means[3] + 0.9 * (means[4] - means[3])
    assert bootstrap_interval(values, resamples=5, seed=7) == pytest.approx((low, high))
    assert bootstrap_interval(values, seed=7) == bootstrap_interval(values, seed=7)


def test_degenerate_inputs():
    assert bootstrap_interval([42.0, 42.0, 42.0]) == (42.0, 42.0)
    assert bootstrap_interval([5.0, math.nan]) == (5.0, 5.0)
    assert all(math.isnan(v) for v in bootstrap_interval([]))
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_interval([1.0], confidence=95)


def _rows():
    base = {"model": "m", "seed": 0, "settings": "{}", "error": "", "source_lang": "en"}
    rows = []
    for i, es in enumerate([100.0, 0.0, 100.0]):
        for target, value in (("en", es), ("fr", 0.0), ("de", 100.0)):
            rows.append({**base, "fact_id": f"f{i}", "method": "memla", "target_lang": target, "ES": value, "PS": value, "NS": 50.0})
    rows.append({**base, "fact_id": "f9", "method": "memla", "target_lang": "en", "ES": None, "PS": None, "NS": None,
                 "error": "EditError: x"})
    return pd.DataFrame(rows)


def test_cell_statistics_count_facts_and_cover_targets():
    stats = cell_statistics(_rows(), seed=0).set_index(["target_lang", "metric"])
    en = stats.loc[("en", "ES")]
    assert en["method"] == "MEMLA" and en["n"] == 3 and en["value"] == pytest.approx(200 / 3)
    assert (en["low"], en["high"]) == bootstrap_interval([100.0, 0.0, 100.0], seed=0)
    avg = stats.loc[("avg", "ES")]
    # Each fact's cross-lingual mean is (0 + 100) / 2 = 50: no spread between facts.
    assert avg["targets"] == 2 and avg["n"] == 3 and (avg["low"], avg["high"]) == (50.0, 50.0)
    assert avg_label("en", 2) == "en-avg (2 of 11)" and avg_label("en", 11) == "en-avg"


def test_thin_cells_are_grey_and_differences_inside_the_interval_uncoloured():
    grid = pd.DataFrame({"en-en": [66.7, 10.0]}, index=["MEMLA", "FT-L"])
    n = pd.DataFrame({"en-en": [3, 40]}, index=grid.index)
    fig = score_heatmap(grid, "t", n=n, low=grid - 5, high=grid + 5, min_n=10)
    coloured, grey = fig.data
    assert math.isnan(coloured.z[0][0]) and coloured.z[1][0] == 10.0  # MEMLA (n=3) is not coloured
    assert grey.z[0][0] == 66.7 and "n=3" in grey.text[0][0]
    assert "n = %{customdata[0]:.0f} facts" in coloured.hovertemplate and coloured.customdata[1][0][0] == 40
    diff = pd.DataFrame({"en-en": [20.0, -3.0]}, index=grid.index)
    beyond = pd.DataFrame({"en-en": [True, False]}, index=grid.index)
    coloured, grey = difference_heatmap(diff, "d", beyond=beyond).data
    assert coloured.z[0][0] == 20.0 and math.isnan(coloured.z[1][0]) and grey.z[1][0] == -3.0
