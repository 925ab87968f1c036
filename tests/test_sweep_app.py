"""Issue 10's app part: the Benchmark page draws a sweep file (ES vs NS scatter, Pareto front,
the rule's choice, the summary table) and the Edit page starts from the tuned or paper preset."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest
from app_helpers import _by_label, _no_errors, FACT

from memla_core.bench.summaries import method_label
from memla_core.bench.tuning import pareto_front, select_configs, sweep_summary
from memla_core.charts import sweep_scatter
from memla_core.editing import presets
from memla_core.editing.memla import MemlaConfig
from memla_core.editing.registry import config_field



# --------------------------------------------------------------------------- sweep rows


def _row(config, fact, target, es, ns, known=True, error=""):
    return {
        "model": "m", "seed": 0, "settings": "{}", "fact_id": fact, "method": config, "source_lang": "en",
        "target_lang": target, "ES": es, "PS": es, "NS": ns, "QS": 0.0, "NS_before": 40.0, "ES_before": 0.0,
        "p_true_before": 0.5 if known else 0.1, "p_new_before": 0.1 if known else 0.5, "error": error,
        "health": "ok", "seconds_edit": 2.0, "seconds_eval": 1.0, "seconds_neurons": 0.0,
    }


def _config_rows(config, es_known, ns, en_es=100.0):
    rows = [_row(config, fact, "en", en_es, 50.0) for fact in ("f1", "f2")]
    rows += [_row(config, fact, t, es_known, ns) for fact in ("f1", "f2") for t in ("fr", "de")]
    return rows


SWEEP = {  # config: (cross-lingual ES on known pairs, cross-lingual NS)
    "memla": (50.0, 30.0),
    "memla[lr=0.01]": (80.0, 29.0),  # best ES within the rule's NS tolerance: chosen
    "memla[lr=0.1]": (100.0, 20.0),  # on the front, NS too low for the rule
    "memla[neurons.threshold=0.1]": (40.0, 25.0),  # dominated by the default
    "ft": (60.0, 10.0),
    "ft[lr=0.001]": (55.0, 35.0),  # NS above ft's default, lower ES: ft's default stays
}


def _sweep_rows() -> list[dict]:
    return [row for config, (es, ns) in SWEEP.items() for row in _config_rows(config, es, ns)]


def _figure(at: AppTest, title: str) -> dict:
    specs = [json.loads(el.proto.spec) for el in at.get("plotly_chart")]
    found = [s for s in specs if title in json.dumps(s["layout"].get("title", ""))]
    assert found, [s["layout"].get("title") for s in specs]
    return found[0]


# --------------------------------------------------------------------------- chart


def test_sweep_scatter_draws_points_front_and_choice():
    summary = sweep_summary(pd.DataFrame(_sweep_rows()))
    front = pareto_front(summary)
    chosen = select_configs(summary)
    assert chosen == {"memla": "memla[lr=0.01]", "ft": "ft"}
    fig = sweep_scatter(summary, front, list(chosen.values()), hover={"en_en_ES": "en-en ES", "nosuch": "ignored"})
    by_name = {trace.name: trace for trace in fig.data}
    assert list(by_name) == ["memla", "ft", "Pareto front", "chosen by the rule"]
    assert list(by_name["memla"].text) == [c for c in SWEEP if c.startswith("memla")]
    assert list(by_name["ft"].x) == [60.0, 55.0]
    # The front: every configuration no other beats on both axes, joined in order of ES.
    line = by_name["Pareto front"]
    assert line.mode == "lines"
    assert list(line.text) == ["ft[lr=0.001]", "memla[lr=0.01]", "memla[lr=0.1]"]
    assert list(line.x) == [55.0, 80.0, 100.0] and list(line.y) == [35.0, 29.0, 20.0]
    star = by_name["chosen by the rule"]
    assert star.marker.symbol == "star" and set(star.text) == {"memla[lr=0.01]", "ft"}
    assert "%{text}" in star.hovertemplate and "en-en ES" in star.hovertemplate
    assert "ignored" not in star.hovertemplate
    assert star.customdata.tolist() == [[100.0], [100.0]]


def test_sweep_scatter_without_front_or_choice_has_only_points():
    summary = sweep_summary(pd.DataFrame(_config_rows("memla", float("nan"), 30.0)))
    fig = sweep_scatter(summary, pareto_front(summary), [])
    assert [t.name for t in fig.data] == ["memla"]


# --------------------------------------------------------------------------- Benchmark page


def test_a_sweep_file_shows_the_scatter_and_the_chosen_configuration(app):
    from memla_core.bench import results_dir
    from memla_core.bench.store import rows_frame, write_results

    write_results(results_dir() / "memla-sweep.csv", rows_frame(_sweep_rows()))
    app.switch_page("app_pages/benchmark.py").run()
    _no_errors(app)
    assert _by_label(app.selectbox, "Results file").value.endswith("memla-sweep.csv")
    assert any(h.value == "Sweep: ES vs NS" for h in app.subheader)
    fig = _figure(app, "Sweep: ES vs NS")
    names = [trace["name"] for trace in fig["data"]]
    assert names == ["MEMLA", "FT-L", "Pareto front", "chosen by the rule"]  # the registry's titles
    star = fig["data"][-1]
    assert set(star["text"]) == {"MEMLA [lr=0.01]", "FT-L"}
    assert fig["layout"]["xaxis"]["title"]["text"] == "en-avg ES, known pairs"
    summary = next(d.value for d in app.dataframe if "configuration" in d.value.columns)
    assert list(summary["configuration"]) == [method_label(config) for config in SWEEP]
    assert set(summary["method"]) == {"MEMLA", "FT-L"}
    chosen = summary.set_index("configuration")["chosen by the rule"]
    assert chosen[chosen].index.tolist() == ["MEMLA [lr=0.01]", "FT-L"]
    assert summary.set_index("configuration").loc["MEMLA [lr=0.1]", "on the Pareto front"]
    assert summary.set_index("configuration").loc["MEMLA [lr=0.1]", "en-avg NS"] == pytest.approx(20.0)
    assert "Download memla-sweep sweep summary (CSV)" in [el.proto.label for el in app.get("download_button")]
    assert any("**MEMLA**: lr=0.01 (configuration MEMLA [lr=0.01])" in m.value for m in app.markdown)


def test_an_ordinary_results_file_has_no_sweep_view(app):
    from memla_core.bench import results_dir
    from memla_core.bench.store import rows_frame, write_results

    plain = [row for row in _sweep_rows() if "[" not in row["method"]]
    write_results(results_dir() / "plain.csv", rows_frame(plain))
    app.switch_page("app_pages/benchmark.py").run()
    _no_errors(app)
    assert not any(h.value == "Sweep: ES vs NS" for h in app.subheader)


# --------------------------------------------------------------------------- Edit page presets


def _edit_page(at: AppTest) -> None:
    _by_label(at.button, "Load model").click().run()
    at.switch_page("app_pages/facts.py").run()
    next(s for s in at.selectbox if s.label.startswith("Fact to work on")).select(FACT).run()
    at.switch_page("app_pages/edit.py").run()
    _no_errors(at)


def test_the_preset_control_sets_the_form(app, tiny_checkpoints, monkeypatch):
    from transformers import AutoConfig

    kind = AutoConfig.from_pretrained(tiny_checkpoints["gemma3_text"]).model_type
    monkeypatch.setitem(presets.TUNED, kind, {"memla": {"lr": 0.02, "neurons.threshold": 0.1}})
    lr_label = config_field(MemlaConfig, "lr").label
    paper_lr = MemlaConfig().lr
    app.session_state["ig_steps"] = 4  # as chosen on the Neurons page: no preset names it
    _edit_page(app)
    # A method with tuned values starts from them, as `memla edit` does.
    start = _by_label(app.radio, "Start from")
    assert start.value == "tuned"
    assert _by_label(app.number_input, lr_label).value == pytest.approx(0.02)
    assert _by_label(app.slider, "Threshold").value == pytest.approx(0.1)
    assert any("preset: tuned (" in c.value and "lr=0.02" in c.value for c in app.caption)
    # Paper defaults put every field back, the shared IG threshold included.
    _by_label(app.number_input, "Max steps").set_value(3).run()
    _by_label(app.radio, "Start from").set_value("paper").run()
    _no_errors(app)
    assert _by_label(app.number_input, lr_label).value == pytest.approx(paper_lr)
    assert _by_label(app.number_input, "Max steps").value == MemlaConfig().max_steps
    assert _by_label(app.slider, "Threshold").value == pytest.approx(0.3)
    assert app.session_state["ig_threshold"] == pytest.approx(0.3)
    assert app.session_state["ig_steps"] == 4  # kept through both presets: its attributions stay valid
    _by_label(app.radio, "Start from").set_value("tuned").run()
    assert _by_label(app.number_input, lr_label).value == pytest.approx(0.02)
    # A method without tuned values says it uses the paper's.
    methods = "Methods (several = compared side by side on this fact)"
    _by_label(app.multiselect, methods).set_value(["memla", "ft"]).run()
    _no_errors(app)
    assert len([r for r in app.radio if r.label == "Start from"]) == 1
    assert any("Starts from the paper's defaults" in c.value for c in app.caption)
