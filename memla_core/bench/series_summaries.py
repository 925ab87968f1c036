"""Rows of a sequential or batch run (``bench.series``) -> curves and a paper-shaped summary.
Every function is pure: rows in, table out (docs/batch_and_sequential.md defines each column).

At one number of edits (``edits``) and target language, over the fact rows without an error:

- ``ES_newest``: ES of the edit pushed at that step (sequential);
- ``retention``: mean ES of the earlier edits still on the stack — every fact pushed before that
  step whose push succeeded (sequential; none at step 1);
- ``ES_all``: mean ES over every fact scored there: the newest and earlier edits, a batch's
  facts, or at 0 edits every fact of the run on the unedited model;
- ``NS``: mean NS over the same facts (at 0 edits: the unedited model on them);
- ``accuracy``: probe accuracy in that language (%), ``drift``: KL from the unedited model;
- ``facts``: how many facts ``ES_all`` averages.

A batch run's batches hold the same number of edits (k), so its rows at k pool every batch.
``<source>-avg`` (``target_lang`` "avg") is the plain mean of the cross-lingual targets (those
other than the edit language), as in the paper's tables.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from .summaries import AVG, method_label

CURVE_METRICS: tuple[str, ...] = ("ES_newest", "retention", "ES_all", "NS", "accuracy", "drift")
CURVE_KEYS: list[str] = ["run", "method", "source_lang", "edits", "target_lang"]
CURVE_COLUMNS: list[str] = [*CURVE_KEYS, *CURVE_METRICS, "facts"]
SUMMARY_METRICS: tuple[str, ...] = ("ES_newest", "retention", "ES_all", "NS", "accuracy", "accuracy_change", "drift")
METRIC_TITLES: dict[str, str] = {
    "ES_newest": "ES of the newest edit", "retention": "retention (ES of earlier edits)",
    "ES_all": "ES of every edit held", "NS": "NS", "accuracy": "ability accuracy (%)",
    "accuracy_change": "ability accuracy change (points)", "drift": "drift (KL, nats/token)",
}
FACT_ROLES = ("unedited", "newest", "earlier", "batch")


def _mean(values: pd.Series) -> float:
    values = pd.to_numeric(values, errors="coerce").dropna()
    return float(values.mean()) if len(values) else math.nan


def curve_table(results: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, method, source, edits, target), then the ``avg`` rows; see the module docstring."""
    if results.empty or "run" not in results:
        return pd.DataFrame(columns=CURVE_COLUMNS)
    rows = results[results["run"] != ""].copy()
    rows["edits"] = pd.to_numeric(rows["edits"], errors="coerce").astype(int)
    ok = rows["error"].fillna("") == ""
    out = []
    for key, group in rows.groupby(CURVE_KEYS, sort=False):
        facts = group[ok.loc[group.index] & group["role"].isin(FACT_ROLES)]
        model = group[ok.loc[group.index] & (group["role"] == "model")]
        out.append({
            **dict(zip(CURVE_KEYS, key)),
            "ES_newest": _mean(facts.loc[facts["role"] == "newest", "ES"]),
            "retention": _mean(facts.loc[facts["role"] == "earlier", "ES"]),
            "ES_all": _mean(facts["ES"]),
            "NS": _mean(facts["NS"]),
            "accuracy": _mean(model["ability_accuracy"]),
            "drift": _mean(model["drift"]),
            "facts": facts["fact_id"].nunique(),
        })
    curve = pd.DataFrame(out, columns=CURVE_COLUMNS)
    return _with_averages(curve).sort_values(["run", "method", "source_lang", "edits"], kind="mergesort",
                                             key=_run_order(curve)).reset_index(drop=True)


def _run_order(curve: pd.DataFrame):
    methods = {m: i for i, m in enumerate(dict.fromkeys(curve["method"]))}

    def key(column: pd.Series) -> pd.Series:
        return column.map(methods) if column.name == "method" else column

    return key


def _with_averages(curve: pd.DataFrame) -> pd.DataFrame:
    """Add, per (run, method, source, edits), the mean of the targets other than the source."""
    cross = curve[(curve["target_lang"] != curve["source_lang"]) & (curve["target_lang"] != AVG)]
    if cross.empty:
        return curve
    means = cross.groupby(CURVE_KEYS[:4], sort=False)[[*CURVE_METRICS]].mean(numeric_only=True)
    means["facts"] = cross.groupby(CURVE_KEYS[:4], sort=False)["facts"].max()
    means = means.reset_index().assign(target_lang=AVG)[CURVE_COLUMNS]
    return pd.concat([curve, means], ignore_index=True)


def curve_table_wide(curve: pd.DataFrame, target: str = AVG) -> pd.DataFrame:
    """The curve at one target (a language, or ``avg``) for printing: one row per (method,
    source, edits), methods by their titles."""
    rows = curve[curve["target_lang"] == target]
    if rows.empty:
        return pd.DataFrame()
    table = rows.assign(method=rows["method"].map(method_label))
    columns = ["method", "source_lang", "edits", *CURVE_METRICS, "facts"]
    return table[columns].dropna(axis=1, how="all").reset_index(drop=True)


def series_summary(curve: pd.DataFrame) -> pd.DataFrame:
    """Paper-shaped, after the most edits of each (run, method, source): one row per metric and
    method, one column per setting ``<source>-<source>`` and ``<source>-avg`` (Tables 3–4's
    shape). ``accuracy_change`` is accuracy there minus accuracy at 0 edits."""
    columns = ["run", "metric", "method", "source_lang", "edits", "setting", "value"]
    if curve.empty:
        return pd.DataFrame(columns=columns)
    out = []
    for (run, method, source), group in curve.groupby(["run", "method", "source_lang"], sort=False):
        last = group["edits"].max()
        for target in (source, AVG):
            at = group[group["target_lang"] == target].set_index("edits")
            if last not in at.index:
                continue
            for metric in SUMMARY_METRICS:
                if metric == "accuracy_change":
                    value = at.loc[last, "accuracy"] - at.loc[0, "accuracy"] if 0 in at.index else math.nan
                else:
                    value = at.loc[last, metric]
                out.append({"run": run, "metric": metric, "method": method, "source_lang": source, "edits": int(last),
                            "setting": f"{source}-{target}", "value": value})
    summary = pd.DataFrame(out, columns=columns)
    return summary.dropna(subset=["value"]).reset_index(drop=True)


def series_summary_wide(summary: pd.DataFrame, source: str) -> pd.DataFrame:
    """``series_summary`` for one edit language: metric, method (title), edits, then a column per setting."""
    rows = summary[summary["source_lang"] == source]
    if rows.empty:
        return pd.DataFrame()
    rows = rows.assign(method=rows["method"].map(method_label))
    wide = rows.pivot_table(index=["metric", "method", "edits"], columns="setting", values="value", sort=False)
    order = {m: i for i, m in enumerate(SUMMARY_METRICS)}
    wide = wide.reset_index().sort_values("metric", key=lambda c: c.map(order), kind="mergesort")
    settings = [s for s in (f"{source}-{source}", f"{source}-{AVG}") if s in wide.columns]
    wide.columns.name = None
    return wide[["metric", "method", "edits", *settings]].reset_index(drop=True)


def series_summary_paths(out: Path) -> dict[str, Path]:
    """Where ``memla bench`` writes the curve and summary tables, next to the results file."""
    stem = Path(out).with_suffix("")
    return {"curve": Path(f"{stem}.curve.csv"), "summary": Path(f"{stem}.series_summary.csv")}
