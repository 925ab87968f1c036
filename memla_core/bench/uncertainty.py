"""How sure is each cell of a benchmark table: facts behind it (n), a bootstrap interval, and for
``<src>-avg`` how many of the paper's target languages it covers.

The paper's cells average 11 target languages over thousands of facts; a run over 3 targets and
5 facts is a different quantity, and these columns say so next to every value.
"""

from __future__ import annotations

from typing import Sequence

import pandas as pd

from ..intervals import CONFIDENCE, DEFAULT_RESAMPLES, bootstrap_interval
from .paper import PAPER_TARGET_ORDER
from .summaries import AVG, MAIN_METRICS, method_label

MIN_FACTS = 10
"""Cells over fewer facts are drawn greyed: their interval spans most of 0–100."""
PAPER_CROSS_TARGETS = len(PAPER_TARGET_ORDER) - 1
"""Target languages behind the paper's ``<src>-avg`` (all MKEB languages but the source)."""
STAT_COLUMNS = ["method", "source_lang", "target_lang", "metric", "value", "n", "low", "high", "targets"]


def cell_statistics(
    results: pd.DataFrame, metrics: Sequence[str] = MAIN_METRICS, confidence: float = CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
) -> pd.DataFrame:
    """One row per (method label, source, target or ``avg``, metric): mean over facts, n facts,
    bootstrap interval over facts, and ``targets`` (1 for a language; for ``avg`` the number of
    cross-lingual targets averaged). ``avg`` resamples facts, each fact counting with the mean of
    its cross-lingual values, so the interval reflects fact-to-fact spread."""
    ok = results[results["error"].fillna("") == ""] if "error" in results else results
    rows: list[dict] = []
    if ok.empty:
        return pd.DataFrame(columns=STAT_COLUMNS)
    for metric in metrics:
        values = pd.to_numeric(ok[metric], errors="coerce")
        frame = ok.assign(_v=values).dropna(subset=["_v"])
        for (method, source, target), group in frame.groupby(["method", "source_lang", "target_lang"], sort=False):
            per_fact = group.groupby("fact_id")["_v"].mean()
            rows.append(_row(method, source, target, metric, per_fact, 1, confidence, resamples, seed))
        cross = frame[frame["target_lang"] != frame["source_lang"]]
        for (method, source), group in cross.groupby(["method", "source_lang"], sort=False):
            per_fact = group.groupby("fact_id")["_v"].mean()
            rows.append(_row(method, source, AVG, metric, per_fact, group["target_lang"].nunique(),
                             confidence, resamples, seed))
    return pd.DataFrame(rows, columns=STAT_COLUMNS)


def _row(method, source, target, metric, per_fact: pd.Series, targets: int, confidence, resamples, seed) -> dict:
    low, high = bootstrap_interval(per_fact.tolist(), confidence, resamples, seed)
    return {"method": method_label(method), "source_lang": source, "target_lang": target, "metric": metric,
            "value": float(per_fact.mean()), "n": int(per_fact.size), "low": low, "high": high, "targets": targets}


def avg_label(source: str, targets: int) -> str:
    """``en-avg`` when the average covers the paper's 11 targets, else ``en-avg (3 of 11)``."""
    if targets >= PAPER_CROSS_TARGETS:
        return f"{source}-{AVG}"
    return f"{source}-{AVG} ({targets} of {PAPER_CROSS_TARGETS})"
