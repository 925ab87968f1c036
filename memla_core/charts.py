"""Plotly figures for the app (and notebooks): plain functions, data in, figure out."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

SCORE_SCALE = [[0.0, "#d73027"], [0.5, "#fee08b"], [1.0, "#1a9850"]]
"""Red → yellow → green for 0–100 % scores (the same colours as the app's tables)."""
ATTRIBUTION_SCALE = "Blues"


def _layout(fig: go.Figure, title: str, height: int | None = None) -> go.Figure:
    fig.update_layout(title=title, margin=dict(l=10, r=10, t=50, b=10), height=height)
    return fig


def attribution_heatmap(
    scores: np.ndarray, language: str, top_k: int | None = 64, bin_size: int = 32, threshold: float | None = None
) -> go.Figure:
    """Layers × neurons attribution of one language.

    With ``top_k`` only the ``top_k`` neurons with the highest score in any layer are drawn
    (columns in neuron order); with ``top_k=None`` every neuron is kept and columns are the
    maximum over blocks of ``bin_size`` neighbouring neurons, so thousands of neurons stay legible.
    """
    layers = np.arange(scores.shape[0])
    if top_k:
        columns = np.sort(np.argsort(scores.max(axis=0))[::-1][: min(top_k, scores.shape[1])])
        z = scores[:, columns]
        x = [str(c) for c in columns]
        hover = "layer %{y}<br>neuron %{x}<br>score %{z:.3f}<extra></extra>"
        x_title = f"neuron (top {len(columns)} of {scores.shape[1]})"
    else:
        n_bins = math.ceil(scores.shape[1] / bin_size)
        padded = np.full((scores.shape[0], n_bins * bin_size), -np.inf)
        padded[:, : scores.shape[1]] = scores
        z = padded.reshape(scores.shape[0], n_bins, bin_size).max(axis=2)
        x = [f"{b * bin_size}–{min((b + 1) * bin_size, scores.shape[1]) - 1}" for b in range(n_bins)]
        hover = "layer %{y}<br>neurons %{x}<br>max score %{z:.3f}<extra></extra>"
        x_title = f"neuron block ({bin_size} neurons each, maximum shown)"
    fig = go.Figure(
        go.Heatmap(
            z=z, x=x, y=layers, colorscale=ATTRIBUTION_SCALE, hovertemplate=hover,
            colorbar=dict(title="score"), zmin=min(0.0, float(np.nanmin(z))),
        )
    )
    fig.update_xaxes(title=x_title, type="category")
    fig.update_yaxes(title="layer", autorange="reversed", dtick=1 if len(layers) <= 40 else None)
    title = f"Attribution in {language} (1 = the prompt's strongest neuron)"
    if threshold is not None:
        title += f"; neurons above {threshold:g} are kept"
    return _layout(fig, title, height=max(320, 22 * len(layers) + 120))


def layer_counts_chart(counts: pd.DataFrame, num_layers: int | None = None) -> go.Figure:
    """Stacked bars per layer: language-specific and language-independent neurons.

    With ``num_layers`` every layer gets a bar position, so empty layers show as gaps.
    """
    if num_layers is not None:
        counts = counts.set_index("layer").reindex(range(num_layers), fill_value=0).rename_axis("layer").reset_index()
    fig = go.Figure()
    for column, colour in (("language_specific", "#4c78a8"), ("language_independent", "#f58518")):
        fig.add_bar(
            x=counts["layer"], y=counts[column], name=column.replace("_", "-"), marker_color=colour,
            hovertemplate="layer %{x}<br>%{y} neurons<extra>" + column.replace("_", "-") + "</extra>",
        )
    fig.update_layout(barmode="stack", legend=dict(orientation="h", y=1.12))
    fig.update_xaxes(title="layer", dtick=1)
    fig.update_yaxes(title="neurons")
    return _layout(fig, "Neurons MEMLA edits, per layer", height=360)


def overlap_heatmap(matrix: pd.DataFrame, measure: str) -> go.Figure:
    """Languages × languages overlap of neuron sets (Jaccard index or shared count)."""
    is_count = measure == "count"
    text = matrix.map(lambda v: "" if pd.isna(v) else (f"{v:.0f}" if is_count else f"{v:.2f}"))
    fig = go.Figure(
        go.Heatmap(
            z=matrix.values, x=list(matrix.columns), y=list(matrix.index), text=text.values,
            texttemplate="%{text}", colorscale="Purples", zmin=0, zmax=None if is_count else 1,
            hovertemplate="%{y} ∩ %{x}: %{z:.3g}<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed")
    label = "shared neurons" if is_count else "Jaccard index |A∩B| / |A∪B|"
    return _layout(fig, f"Overlap of the languages' neuron sets ({label})", height=380)


def edit_trace_chart(trace: Sequence[dict[str, float]], title: str = "Optimisation") -> go.Figure:
    """Loss (left) and P(new)/P(true) (right) per optimisation step."""
    frame = pd.DataFrame(list(trace), columns=["step", "loss", "p_new", "p_true"])
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "probability of the answers"))
    fig.add_scatter(x=frame["step"], y=frame["loss"], name="loss", mode="lines+markers", row=1, col=1)
    fig.add_scatter(x=frame["step"], y=frame["p_new"], name="P(new)", mode="lines+markers", row=1, col=2)
    if frame["p_true"].notna().any():
        fig.add_scatter(x=frame["step"], y=frame["p_true"], name="P(true)", mode="lines+markers", row=1, col=2)
    fig.update_xaxes(title="step")
    fig.update_yaxes(range=[0, 1], row=1, col=2)
    return _layout(fig, title, height=300)


def score_heatmap(
    grid: pd.DataFrame, title: str, zmax: float = 100.0, fmt: str = ".1f",
    n: pd.DataFrame | None = None, low: pd.DataFrame | None = None, high: pd.DataFrame | None = None,
    min_n: int = 0,
) -> go.Figure:
    """Rows × columns of percentages (paper tables, methods × languages) in red→green.

    With ``n`` (facts per cell) and ``low``/``high`` (its interval), hovering a cell shows them,
    and cells over fewer than ``min_n`` facts are drawn grey with their n, so a 0/50/100 from two
    facts does not look like a finding."""
    values = grid.values.astype(float)
    counts = _aligned(n, grid)
    text = grid.map(lambda v: "" if pd.isna(v) else format(v, fmt)).values
    few = np.zeros(values.shape, dtype=bool)
    if counts is not None:
        few = np.isfinite(values) & (np.nan_to_num(counts, nan=0) < min_n)
        text = np.array([[t + (f"<br>n={c:.0f}" if f else "") for t, c, f in zip(tr, cr, fr)]
                         for tr, cr, fr in zip(text, counts, few)], dtype=object)
    hover = "%{y}, %{x}: %{z:.2f}" + _stats_hover(grid, counts, _aligned(low, grid), _aligned(high, grid))
    fig = go.Figure(
        go.Heatmap(
            z=np.where(few, np.nan, values), x=[str(c) for c in grid.columns], y=[str(i) for i in grid.index],
            text=text, texttemplate="%{text}", colorscale=SCORE_SCALE, zmin=0, zmax=zmax,
            customdata=_customdata(grid, counts, low, high), hovertemplate=hover,
        )
    )
    if few.any():
        _grey_cells(fig, grid, values, few, text, counts, low, high, hover)
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(type="category")
    return _layout(fig, title, height=max(260, 40 * len(grid) + 120))


def _aligned(frame: pd.DataFrame | None, grid: pd.DataFrame) -> np.ndarray | None:
    return None if frame is None else frame.reindex(index=grid.index, columns=grid.columns).values.astype(float)


def _customdata(grid, counts, low, high) -> np.ndarray | None:
    if counts is None:
        return None
    lo, hi = _aligned(low, grid), _aligned(high, grid)
    nan = np.full(counts.shape, np.nan)
    return np.dstack([counts, nan if lo is None else lo, nan if hi is None else hi])


def _stats_hover(grid, counts, lo, hi) -> str:
    if counts is None:
        return "<extra></extra>"
    extra = "<br>n = %{customdata[0]:.0f} facts"
    if lo is not None and hi is not None:
        extra += "<br>95% interval %{customdata[1]:.1f} – %{customdata[2]:.1f}"
    return extra + "<extra></extra>"


def _grey_cells(fig, grid, values, mask, text, counts, low, high, hover) -> None:
    """Overlay the masked cells in grey (their text and hover kept)."""
    fig.add_trace(
        go.Heatmap(
            z=np.where(mask, values, np.nan), x=[str(c) for c in grid.columns], y=[str(i) for i in grid.index],
            text=np.where(mask, text, ""), texttemplate="%{text}", colorscale=[[0, "#e0e0e0"], [1, "#e0e0e0"]],
            showscale=False, customdata=_customdata(grid, counts, low, high), hovertemplate=hover,
        )
    )


def difference_heatmap(grid: pd.DataFrame, title: str, fmt: str = "+.1f", beyond: pd.DataFrame | None = None) -> go.Figure:
    """Signed differences in percentage points (ours − paper): blue above, red below, white at 0;
    the scale is symmetric so equal gaps look equally strong either way.

    With ``beyond`` (True where the paper's value lies outside our interval) only those cells are
    coloured; the others are grey: their difference is within what resampling the facts gives."""
    values = grid.values.astype(float)
    finite = np.abs(values[np.isfinite(values)])
    bound = max(float(finite.max()) if finite.size else 0.0, 1.0)
    text = grid.map(lambda v: "" if pd.isna(v) else format(v, fmt)).values
    inside = np.zeros(values.shape, dtype=bool)
    if beyond is not None:
        outside = beyond.reindex(index=grid.index, columns=grid.columns).fillna(False).values.astype(bool)
        inside = np.isfinite(values) & ~outside
    hover = "%{y}, %{x}: %{z:+.2f} points<extra></extra>"
    fig = go.Figure(
        go.Heatmap(
            z=np.where(inside, np.nan, values), x=[str(c) for c in grid.columns], y=[str(i) for i in grid.index],
            text=text, texttemplate="%{text}", colorscale="RdBu", zmid=0, zmin=-bound, zmax=bound,
            hovertemplate=hover,
        )
    )
    if inside.any():
        fig.add_trace(
            go.Heatmap(
                z=np.where(inside, values, np.nan), x=[str(c) for c in grid.columns], y=[str(i) for i in grid.index],
                text=np.where(inside, text, ""), texttemplate="%{text}", colorscale=[[0, "#eeeeee"], [1, "#eeeeee"]],
                showscale=False, hovertemplate="%{y}, %{x}: %{z:+.2f} points (within our 95% interval)<extra></extra>",
            )
        )
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(type="category")
    return _layout(fig, title, height=max(260, 40 * len(grid) + 120))


def grouped_bars(grid: pd.DataFrame, title: str, y_title: str = "%") -> go.Figure:
    """One bar group per column, one bar per row (e.g. ablation variants per setting)."""
    fig = go.Figure()
    for name, row in grid.iterrows():
        fig.add_bar(x=[str(c) for c in grid.columns], y=row.values, name=str(name))
    fig.update_layout(barmode="group", legend=dict(orientation="h", yanchor="top", y=-0.12))
    fig.update_yaxes(title=y_title)
    return _layout(fig, title, height=420)


def sweep_scatter(
    summary: pd.DataFrame,
    front: pd.Series,
    chosen: Sequence[str] = (),
    x: str = "avg_ES_known",
    y: str = "avg_NS",
    x_title: str = "cross-lingual ES on known pairs (%)",
    y_title: str = "cross-lingual NS (%)",
    hover: dict[str, str] | None = None,
    title: str = "Sweep: ES vs NS",
) -> go.Figure:
    """One point per configuration of a sweep summary (``config`` and ``method`` columns),
    coloured by method; the Pareto ``front`` (a bool Series aligned with ``summary``) drawn as a
    line through its points in order of ``x``; the ``chosen`` configurations marked with a star.

    ``hover`` maps further columns to their labels, shown with the configuration's full name.
    """
    hover = {c: label for c, label in (hover or {}).items() if c in summary}
    extra = "".join(f"<br>{label}: %{{customdata[{i}]:.1f}}" for i, label in enumerate(hover.values()))
    template = f"%{{text}}<br>{x_title}: %{{x:.1f}}<br>{y_title}: %{{y:.1f}}{extra}<extra></extra>"

    def points(rows: pd.DataFrame, **style) -> go.Scatter:
        data = rows[list(hover)].apply(pd.to_numeric, errors="coerce").to_numpy() if hover else None
        return go.Scatter(x=rows[x], y=rows[y], text=rows["config"], customdata=data, hovertemplate=template, **style)

    fig = go.Figure()
    for method, rows in summary.groupby("method", sort=False):
        fig.add_trace(points(rows, mode="markers", name=str(method), marker=dict(size=10, opacity=0.8)))
    on_front = summary[front.reindex(summary.index, fill_value=False).astype(bool)].sort_values(x)
    if not on_front.empty:
        fig.add_trace(points(on_front, mode="lines", name="Pareto front", line=dict(color="#444", dash="dash")))
    picked = summary[summary["config"].isin(list(chosen))]
    if not picked.empty:
        fig.add_trace(points(picked, mode="markers", name="chosen by the rule",
                             marker=dict(symbol="star", size=18, color="gold", line=dict(color="black", width=1))))
    fig.update_xaxes(title=x_title)
    fig.update_yaxes(title=y_title)
    return _layout(fig, title, height=480)


def edit_curves(
    curve: pd.DataFrame, metric: str, title: str, y_title: str, x: str = "edits", x_title: str = "number of edits",
) -> go.Figure:
    """One line per method (and edit language, when several) of ``metric`` against ``x``: a
    sequential or batch run's curve table (``bench.series_summaries.curve_table``) at one target.
    Points without a value (retention before the second edit) are left out, not drawn at 0."""
    fig = go.Figure()
    several_sources = curve["source_lang"].nunique() > 1 if "source_lang" in curve else False
    for key, rows in curve.groupby(["method", "source_lang"] if several_sources else ["method"], sort=False):
        rows = rows.dropna(subset=[metric]).sort_values(x)
        if rows.empty:
            continue
        name = " ".join(str(k) for k in (key if isinstance(key, tuple) else (key,)))
        fig.add_scatter(x=rows[x], y=rows[metric], mode="lines+markers", name=name,
                        hovertemplate=f"{name}<br>{x_title}: %{{x}}<br>{y_title}: %{{y:.3g}}<extra></extra>")
    fig.update_xaxes(title=x_title, rangemode="tozero")
    fig.update_yaxes(title=y_title)
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.18))
    return _layout(fig, title, height=380)
