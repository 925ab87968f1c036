"""Tables (memla_core.views) and figures (memla_core.charts): pure functions, checked by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from memla_core import charts
from memla_core.evaluation import EvalReport
from memla_core.neurons import NeuronConfig, NeuronSets, PromptAttribution
from memla_core.views import (
    ablation_grid,
    difference_grid,
    edit_comparison,
    fact_side_by_side,
    filter_facts,
    language_attribution,
    main_results_grid,
    methods_side_by_side,
    methods_summary,
    multihop_grid,
    neuron_overlap,
    paper_table,
    source_target_grid,
    style_scores,
    target_order,
    top_neurons,
)


def _neurons() -> NeuronSets:
    en = np.zeros((2, 4))
    en[0, 1], en[1, 3] = 2.0, 1.0
    para = np.zeros((2, 4))
    para[1, 2] = 4.0
    zh = np.zeros((2, 4))
    zh[0, 1] = 3.0
    return NeuronSets(
        fact_id="f",
        source_language="en",
        per_language={"en": frozenset({(0, 1), (1, 3), (1, 2)}), "zh": frozenset({(0, 1)})},
        language_independent=frozenset({(0, 1)}),
        language_specific=frozenset({(1, 3), (1, 2)}),
        attributions=(
            PromptAttribution("en", "p", "a", en),
            PromptAttribution("en", "p2", "a", para),
            PromptAttribution("zh", "q", "b", zh),
        ),
        config=NeuronConfig(independent_languages=("en", "zh")),
    )


def test_fact_side_by_side(bundled):
    fact = bundled.get("geo-capital-france")
    table = fact_side_by_side(fact, ["en", "zh"])
    assert list(table.columns) == ["English (en)", "Chinese (zh)"]
    assert table.loc["edit prompt", "English (en)"] == "The capital of France is"
    assert table.loc["true answer", "Chinese (zh)"] == "巴黎"
    assert table.loc["neighborhood 1", "English (en)"].count("→") == 1


def test_filter_facts_any_language(bundled):
    assert [f.example_id for f in filter_facts(bundled, "巴黎")] == ["geo-capital-france"]
    assert all(f.relation == "capital" for f in filter_facts(bundled, relation="capital"))
    assert len(filter_facts(bundled, "")) == len(bundled)


def test_language_attribution_is_relative_to_each_prompt():
    scores = language_attribution(_neurons(), "en")
    assert scores[0, 1] == 1.0 and scores[1, 3] == 0.5 and scores[1, 2] == 1.0
    top = top_neurons(_neurons(), "en", 3)
    assert set(zip(top.layer, top.neuron)) == {(0, 1), (1, 2), (1, 3)}
    assert top.set_index(["layer", "neuron"]).loc[(0, 1), "language_independent"]


def test_neuron_overlap_by_hand():
    jaccard = neuron_overlap(_neurons(), "jaccard")
    counts = neuron_overlap(_neurons(), "count")
    assert jaccard.loc["en", "zh"] == pytest.approx(1 / 3)
    assert jaccard.loc["en", "en"] == 1.0
    assert counts.loc["en", "zh"] == 1 and counts.loc["en", "en"] == 3


def _report(p_new, es, answer):
    summary = pd.DataFrame(
        [{"source_lang": "en", "target_lang": lang, "ES": e, "PS": e, "NS": 50.0, "QS": math.nan,
          "answer": answer, "p_new": p, "p_true": 0.1} for lang, p, e in zip(["en", "zh"], p_new, es)]
    )
    return EvalReport(summary, pd.DataFrame(columns=["target_lang", "kind", "prompt", "answer"]))


def test_edit_comparison_and_side_by_side():
    before, after = _report([0.01, 0.02], [0.0, 0.0], "Paris"), _report([0.9, 0.3], [100.0, 0.0], "Lyon")
    table = edit_comparison(before, after, "MEMLA")
    row = table.set_index("target language").loc["en"]
    assert row["answer before"] == "Paris" and row["answer after"] == "Lyon"
    assert row["P(new) before"] == 0.01 and row["P(new) after"] == 0.9 and row["ES"] == 100.0
    assert row["ES before"] == 0.0
    other = edit_comparison(before, before, "FT")
    grid = methods_side_by_side([table, other], "ES")
    assert list(grid.index) == ["MEMLA", "FT"]  # the order the methods were chosen in
    assert grid.loc["MEMLA", "en"] == 100.0 and grid.loc["FT", "en"] == 0.0
    summary = methods_summary({"MEMLA": after, "FT": before}, "en").set_index("method")
    assert summary.loc["MEMLA", "ES en"] == 100.0 and summary.loc["MEMLA", "ES others"] == 0.0
    assert summary.loc["FT", "PS en"] == 0.0
    html = style_scores(table).to_html()
    assert "background-color" in html


def test_paper_grids():
    grid = main_results_grid(paper_table("main_results"), "en", "ES")
    assert grid.shape == (7, 13) and grid.loc["MEMLA", "en-avg"] > 0
    assert list(grid.columns[:2]) == ["en-en", "en-zh"]
    assert ablation_grid(paper_table("ablation")).shape == (5, 6)
    assert multihop_grid(paper_table("multihop")).loc["MEMLA", "en-en"] > 0


def test_attribution_heatmap_top_k_and_blocks():
    scores = np.random.default_rng(0).random((3, 100))
    top = charts.attribution_heatmap(scores, "English", top_k=10)
    assert isinstance(top, go.Figure) and len(top.data[0].x) == 10
    kept = [int(x) for x in top.data[0].x]
    assert sorted(kept) == kept and set(kept) == set(np.argsort(scores.max(0))[-10:].tolist())
    blocks = charts.attribution_heatmap(scores, "English", top_k=None, bin_size=32)
    assert len(blocks.data[0].x) == 4
    assert blocks.data[0].z[0][0] == pytest.approx(scores[0, :32].max())


def test_other_charts():
    counts = _neurons().layer_counts()
    assert len(charts.layer_counts_chart(counts).data) == 2
    assert list(charts.layer_counts_chart(counts, num_layers=4).data[0].x) == [0, 1, 2, 3]
    assert charts.overlap_heatmap(neuron_overlap(_neurons()), "jaccard").data[0].type == "heatmap"
    trace = [{"step": i, "loss": 1.0 / (i + 1), "p_new": i / 10, "p_true": 0.5} for i in range(5)]
    assert len(charts.edit_trace_chart(trace).data) == 3
    grid = main_results_grid(paper_table("main_results"), "zh", "NS")
    assert charts.score_heatmap(grid, "t").data[0].zmax == 100.0
    assert len(charts.grouped_bars(ablation_grid(paper_table("ablation")).T, "t").data) == 6


def _long(cells: list[tuple[str, str, str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(cells, columns=["metric", "method", "source_lang", "target_lang", "value"]).assign(table=3)


def test_benchmark_grids_by_hand():
    assert target_order(["avg", "xx", "zh", "en", "ab"]) == ["en", "zh", "ab", "xx", "avg"]
    ours = _long([
        ("ES", "MEMLA", "en", "en", 90.0), ("ES", "MEMLA", "en", "zh", 40.0), ("ES", "MEMLA", "en", "avg", 40.0),
        ("ES", "FT-L", "en", "en", 80.0), ("ES", "FT-L", "en", "zh", 10.0), ("ES", "FT-L", "en", "avg", 10.0),
        ("ES", "MEMLA", "zh", "zh", 70.0), ("ES", "MEMLA", "zh", "en", 30.0), ("NS", "MEMLA", "en", "en", 5.0),
    ])
    grid = main_results_grid(ours, "en", "ES")
    assert list(grid.columns) == ["en-en", "en-zh", "en-avg"] and list(grid.index) == ["MEMLA", "FT-L"]
    st = source_target_grid(ours, "MEMLA", "ES")
    assert list(st.index) == ["en", "zh"] and list(st.columns) == ["en", "zh", "avg"]
    assert st.loc["zh", "en"] == 30.0 and math.isnan(st.loc["zh", "avg"])

    paper = main_results_grid(paper_table("main_results"), "en", "ES")
    diff = difference_grid(grid, paper)
    assert diff.shape == grid.shape
    assert diff.loc["FT-L", "en-zh"] == pytest.approx(10.0 - paper.loc["FT-L", "en-zh"])
    only_ours = difference_grid(grid.rename(index={"FT-L": "NEW"}), paper)
    assert only_ours.loc["NEW"].isna().all()  # the paper has no such row: no difference, not a zero

    fig = charts.difference_heatmap(diff, "d")
    heat = fig.data[0]
    assert heat.zmid == 0 and heat.zmin == -heat.zmax == -np.nanmax(np.abs(diff.values))
    assert heat.text[1][1].startswith("-")  # signed labels


def test_tables_for_people_name_methods_by_title_and_show_no_none():
    from memla_core.views import MISSING, display_table, readable_results

    rows = pd.DataFrame({"method": ["ft", "memla:w/o LSM", "memla[lr=0.01]"], "source_lang": ["en"] * 3,
                         "seconds_edit": [5.2512, math.nan, 1.0], "p_new_before": [1.2e-5, 0.5, math.nan],
                         "facts": [1.0, 2.0, 3.0], "error": ["", None, "EditError: x"]})
    readable = readable_results(rows)
    assert list(readable["method"]) == ["FT-L", "MEMLA w/o LSM", "MEMLA [lr=0.01]"]
    assert list(readable.columns) == ["method", "edit language", "seconds per edit", "P(new) before", "facts", "error"]
    shown = display_table(readable)
    text = shown.to_string()
    assert "None" not in text and "nan" not in text and text.count(MISSING) == 3
    assert "5.25" in text and "1.2e-05" in text and " 3 " in f"{text} "  # rounded per column; counts stay whole
    big = display_table(pd.DataFrame({"x": [math.nan, 0.25] * 60_000}))  # beyond a Styler: text
    assert isinstance(big, pd.DataFrame) and list(big["x"][:2]) == [MISSING, "0.25"]
