"""The Benchmark page's view of a sequential or batch run (``memla bench --sequential N`` /
``--batch-size k``): retention, ES, NS, ability accuracy and drift against the number of edits,
one line per method, and the tables behind them."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from memla_core.bench.series_summaries import (
    METRIC_TITLES,
    curve_table,
    curve_table_wide,
    series_summary,
    series_summary_wide,
)
from memla_core.bench.summaries import AVG, method_label
from memla_core.charts import edit_curves
from memla_core.views import language_label

from .widgets import table

CHARTS = ("retention", "accuracy", "drift", "ES_newest", "ES_all", "NS")
"""Drawn in this order: what the issue asks first (retention, ability), then the rest."""


def _target_label(target: str, source: str) -> str:
    return f"average over the targets other than {source}" if target == AVG else language_label(target)


def series_section(results: pd.DataFrame, stem: str) -> None:
    """Curves of one run kind and edit language, at one target, then the summary table."""
    curve = curve_table(results)
    if curve.empty:
        st.info("No step of this run is complete yet.")
        return
    kinds = list(dict.fromkeys(curve["run"]))
    sources = list(dict.fromkeys(curve["source_lang"]))
    c1, c2, c3 = st.columns(3)
    kind = kinds[0] if len(kinds) == 1 else c1.radio("Run", kinds, horizontal=True, key="series_kind")
    source = sources[0] if len(sources) == 1 else c2.radio("Edits made in", sources, horizontal=True,
                                                           format_func=language_label, key="series_source")
    mine = curve[(curve["run"] == kind) & (curve["source_lang"] == source)]
    targets = [t for t in dict.fromkeys(mine["target_lang"]) if t != AVG]
    options = ([AVG] if AVG in set(mine["target_lang"]) else []) + targets
    target = c3.selectbox("Scored in", options, format_func=lambda t: _target_label(t, source), key="series_target")
    st.subheader(f"{'Sequential edits' if kind == 'sequential' else 'Batch edits'}: what the edits cost")
    st.caption("Retention: mean ES of the edits made before the newest one that are still held. Ability: accuracy "
               "on the bundled two-choice probe; drift: KL divergence of the next-token distributions from the "
               "unedited model on ordinary text (0 at 0 edits). Definitions: docs/batch_and_sequential.md.")
    at = mine[mine["target_lang"] == target].assign(method=lambda f: f["method"].map(method_label))
    shown = [m for m in CHARTS if at[m].notna().any()]
    for left, right in zip(shown[::2], shown[1::2] + [None]):
        cols = st.columns(2)
        for col, metric in zip(cols, (left, right)):
            if metric is not None:
                col.plotly_chart(edit_curves(at, metric, METRIC_TITLES[metric], METRIC_TITLES[metric]),
                                 key=f"series_chart:{metric}")
    table(curve_table_wide(mine, target), f"{stem} curve {source} {target}")
    summary = series_summary_wide(series_summary(mine), source)
    if not summary.empty:
        st.markdown("**After the last edit** (shape of the paper's Tables 3–4)")
        table(summary, f"{stem} summary {source}")
