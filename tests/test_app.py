"""The Streamlit app end to end with AppTest, on a tiny random Gemma-3 checkpoint.

``MEMLA_APP_MODEL`` points the Setup page at the tiny checkpoint; IG steps and MEMLA steps are
set small through the app's own widgets.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from app_helpers import _by_label, _no_errors, FACT, fill_bench_form

from memla_core.data import load_bundled

PAGES = ["app_pages/home.py", "app_pages/facts.py", "app_pages/neurons.py", "app_pages/edit.py", "app_pages/benchmark.py"]


def _downloads(at: AppTest) -> list[str]:
    return [el.proto.label for el in at.get("download_button")]


def _load_model(at: AppTest) -> None:
    _by_label(at.button, "Load model").click().run()
    _no_errors(at)
    assert at.session_state["model_spec"] is not None
    assert any("Parameters" == m.label for m in at.metric)


def _pick_fact(at: AppTest) -> None:
    at.switch_page("app_pages/facts.py").run()
    next(s for s in at.selectbox if s.label.startswith("Fact to work on")).select(FACT).run()
    _no_errors(at)
    assert at.session_state["fact_id"] == FACT


def _small_ig(at: AppTest) -> None:
    _by_label(at.number_input, "IG steps m").set_value(2).run()
    _by_label(at.slider, "Threshold").set_value(0.1).run()


def test_every_page_renders_without_a_model(app):
    for page in PAGES:
        app.switch_page(page).run()
        _no_errors(app)
        # Drawn by app.py: the page ran inside the app's navigation, not on its own.
        assert app.sidebar.markdown[0].value == "#### This session"
    # Pages that need a model or a fact say so and link to the page that provides it.
    app.switch_page("app_pages/edit.py").run()
    assert any("No model is loaded" in i.value for i in app.info)


def test_setup_loads_the_preselected_model(app, tiny_checkpoints):
    assert _by_label(app.radio, "Model").value == str(tiny_checkpoints["gemma3_text"])
    _load_model(app)
    assert "dataset statistics (CSV)" in " ".join(_downloads(app))


def test_pick_fact_shows_it_in_every_language(app):
    _load_model(app)
    _pick_fact(app)
    side_by_side = app.dataframe[-1].value
    assert "English (en)" in side_by_side.columns and "Chinese (zh)" in side_by_side.columns
    assert side_by_side.loc["new answer", "English (en)"] == "Lyon"
    assert f"Download fact {FACT} (CSV)" in _downloads(app)
    # Search narrows the list.
    _by_label(app.text_input, "Search").input("巴黎").run()
    assert app.session_state["fact_id"] == FACT
    _no_errors(app)


def test_compute_neurons(app):
    _load_model(app)
    _pick_fact(app)
    app.switch_page("app_pages/neurons.py").run()
    _small_ig(app)
    _by_label(app.button, "Find neurons").click().run()
    _no_errors(app)
    neurons = app.session_state["neurons"]
    assert neurons is not None and neurons.fact_id == FACT and neurons.config.steps == 2
    assert any("Found" in s.value for s in app.success)
    assert len(app.get("plotly_chart")) >= 2
    labels = _downloads(app)
    assert "Download neuron sets per language (CSV)" in labels
    assert any(label.startswith("Download neuron overlap") for label in labels)


def test_apply_and_revert_an_edit(app):
    _load_model(app)
    _pick_fact(app)
    app.switch_page("app_pages/edit.py").run()
    _small_ig(app)
    _by_label(app.number_input, "Max steps").set_value(3).run()
    _by_label(app.number_input, "Learning rate").set_value(0.05).run()
    _by_label(app.button, "Apply edit").click().run()
    _no_errors(app)
    outcomes = app.session_state["edits"]
    assert list(outcomes) == ["memla"]
    comparison = next(df.value for df in app.dataframe if "answer after" in getattr(df.value, "columns", []))
    assert list(comparison["target language"]) == ["en", "zh", "fr", "de"]
    labels = _downloads(app)
    assert "Download MEMLA before and after (CSV)" in labels  # the registry's title, as everywhere
    assert "Download this edit as a peft LoRA adapter (.zip)" in labels

    _by_label(app.button, "Answer").click().run()
    _no_errors(app)
    answers = app.session_state["free_text_answers"]["answers"]
    assert set(answers) == {"Unedited model", "Edited with MEMLA"}

    _by_label(app.button, "Revert edit").click().run()
    _no_errors(app)
    assert app.session_state["edits"] == {}
    assert any("reverted" in i.value for i in app.info)


def test_ablation_switch_off_both_editors_is_explained(app):
    _load_model(app)
    _pick_fact(app)
    app.switch_page("app_pages/edit.py").run()
    _by_label(app.toggle, "Use the language-specific editor (LSE)").set_value(False).run()
    _by_label(app.toggle, "Use the language-independent editor (LIE)").set_value(False).run()
    assert any("use_lse / use_lie" in e.value for e in app.error)
    assert _by_label(app.button, "Apply edit").disabled


def test_upload_an_mkeb_file(app):
    records = load_bundled().to_records()[:3]
    app.file_uploader[0].set_value(("three.json", json.dumps(records).encode(), "application/json")).run()
    _by_label(app.button, "Use this file").click().run()
    _no_errors(app)
    assert len(app.session_state["dataset"]) == 3


def test_upload_an_invalid_file_shows_what_is_wrong(app):
    app.file_uploader[0].set_value(("bad.json", b'[{"example_id": 1}]', "application/json")).run()
    _by_label(app.button, "Use this file").click().run()
    assert not app.exception
    assert any("does not validate" in e.value and "edit" in e.value for e in app.error)


def test_a_model_that_does_not_exist_is_an_error_not_a_traceback(app):
    _by_label(app.radio, "Model").set_value("Another model (local folder or Hugging Face id)").run()
    _by_label(app.text_input, "Folder or hub id").input("/nonexistent/model").run()
    _by_label(app.button, "Load model").click().run()
    assert not app.exception
    assert any("does not exist" in e.value for e in app.error)  # names the real cause (issue 12)
    assert app.session_state["model_spec"] is None


def test_paper_tables(app):
    app.switch_page("app_pages/benchmark.py").run()
    _no_errors(app)
    assert any("Load a model on the Setup page" in i.value for i in app.info)  # the run form needs a model
    assert any("No benchmark results yet" in i.value for i in app.info)
    grid = app.dataframe[0].value
    assert "en-avg" in grid.columns and "MEMLA" in grid.index
    assert "Download paper table 3 ES (CSV)" in _downloads(app)


def test_benchmark_page_runs_and_shows_results_next_to_the_paper(app):
    from memla_core.bench import main_table, read_results
    from memla_core.views import main_results_grid, paper_table

    _load_model(app)
    app.switch_page("app_pages/benchmark.py").run()
    fill_bench_form(app, "apptest", facts=2, methods=["memla", "ike"])
    job = app.session_state["bench_job"]
    assert job.wait(300).state == "done", job.error
    app.run()
    _no_errors(app)
    assert any("The last run finished" in s.value for s in app.success)
    assert _by_label(app.selectbox, "Results file").value.endswith("apptest.csv")
    assert [m.value for m in app.metric][:3] == ["2", "4", "0"]  # facts, edits, failed edits
    downloads = _downloads(app)
    for name in ("apptest en ES ours", "apptest en ES paper", "apptest en ES difference", "apptest rows",
                 "apptest time and coverage", "apptest table en (all metrics, as printed)"):
        assert f"Download {name} (CSV)" in downloads, downloads
    # The difference shown is ours − paper, cell by cell.
    ours = main_results_grid(main_table(read_results(job.config.out)), "en", "ES")
    paper = main_results_grid(paper_table("main_results"), "en", "ES")
    # (A run over fewer targets than the paper has no "en-avg" difference: its average is another quantity.)
    shown = next(d.value for d in app.dataframe if "en-en" in d.value.columns and "IKE" in d.value.index
                 and d.value.loc["IKE", "en-en"] == pytest.approx(ours.loc["IKE", "en-en"] - paper.loc["IKE", "en-en"], abs=0.01))
    assert shown.loc["MEMLA", "en-zh"] == pytest.approx(ours.loc["MEMLA", "en-zh"] - paper.loc["MEMLA", "en-zh"], abs=0.01)


def test_benchmark_can_be_stopped_and_resumed_from_the_page(app):
    _load_model(app)
    app.switch_page("app_pages/benchmark.py").run()
    fill_bench_form(app, "stopme", facts=40, methods=["memla"])
    job = app.session_state["bench_job"]
    assert job.status().active  # 40 facts take far longer than one page run
    assert any(p.proto.text.startswith("Running") for p in app.get("progress"))
    _by_label(app.button, "Stop the benchmark").click().run()
    assert job.wait(120).state == "cancelled"
    app.run()
    _no_errors(app)
    assert any("The last run was stopped" in i.value for i in app.info)
    stopped = job.status()
    assert stopped.facts_done < 40
    # Starting it again with the same results file computes only what is missing, and says so.
    fill_bench_form(app, "stopme", facts=1, methods=["memla"])
    if stopped.groups_computed:  # the first fact's edit was saved before the stop: nothing is left
        assert app.session_state["bench_job"] is job
        assert any("Nothing left to do: stopme.csv already holds the 1 edit" in i.value for i in app.info)
        return
    assert any("Computing 1 edit into stopme.csv" in i.value for i in app.info)
    again = app.session_state["bench_job"]
    assert again is not job and again.wait(120).state == "done", again.error
    assert again.status().groups_computed == 1
    assert set(again.results()["fact_id"]) >= {"geo-capital-france"}


def test_every_registered_method_has_a_settings_form(app):
    from memla_core.editing import METHODS

    _load_model(app)
    _pick_fact(app)
    app.switch_page("app_pages/edit.py").run()
    _by_label(app.multiselect, "Methods (several = compared side by side on this fact)").set_value(list(METHODS)).run()
    _no_errors(app)
    assert [tab.label for tab in app.tabs][: len(METHODS)] == [spec.title for spec in METHODS.values()]
    # Every form is valid; Apply waits only for MEND's hypernetwork, which this fresh cache lacks.
    assert _by_label(app.button, "Apply edit").disabled and any("MEND cannot edit yet" in w.value for w in app.warning)
    _by_label(app.multiselect, "Methods (several = compared side by side on this fact)").set_value(
        [m for m in METHODS if m != "mend"]).run()
    assert not _by_label(app.button, "Apply edit").disabled


def test_methods_side_by_side(app):
    _load_model(app)
    _pick_fact(app)
    app.switch_page("app_pages/edit.py").run()
    _by_label(app.multiselect, "Methods (several = compared side by side on this fact)").set_value(["memla", "ike"]).run()
    _small_ig(app)
    _by_label(app.number_input, "Max steps").set_value(3).run()
    _by_label(app.multiselect, "Evaluated in (target languages)").set_value(["en", "zh"]).run()
    _by_label(app.button, "Apply edit").click().run()
    _no_errors(app)
    assert list(app.session_state["edits"]) == ["memla", "ike"]
    grid = next(df.value for df in app.dataframe if "method" in getattr(df.value, "columns", []) and "en" in df.value.columns)
    assert set(grid["method"]) == {"MEMLA", "IKE"}
    assert "Download methods side by side ES (CSV)" in _downloads(app)
    # Only MEMLA edits are LoRA adapters.
    assert _downloads(app).count("Download this edit as a peft LoRA adapter (.zip)") == 1


def _write_results(name: str, rows: list[dict]) -> Path:
    from memla_core.bench import results_dir
    from memla_core.bench.store import rows_frame, write_results

    path = results_dir() / f"{name}.csv"
    write_results(path, rows_frame(rows))
    return path


def test_benchmark_results_of_several_sources_and_of_only_failures(app):
    # Files written by `memla bench` into $MEMLA_CACHE/bench show up without a model loaded.
    base = {"model": "m", "seed": 0, "settings": "{}", "error": "", "seconds_edit": 1.0, "seconds_eval": 2.0,
            "seconds_neurons": 0.0}
    rows = [
        {**base, "fact_id": "f1", "method": method, "source_lang": source, "target_lang": target,
         "ES": es, "PS": es, "NS": 50.0}
        for method, es in (("memla", 80.0), ("ft", 20.0))
        for source in ("en", "zh") for target in ("en", "zh", "fr")
    ]
    _write_results("twosources", rows)
    app.switch_page("app_pages/benchmark.py").run()
    _no_errors(app)
    assert [m.value for m in app.metric][:3] == ["1", "4", "0"]
    assert _by_label(app.selectbox, "Results file").value.endswith("twosources.csv")
    grids = [d.value for d in app.dataframe if d.value.index.name == "source"]
    assert grids and list(grids[0].index) == ["en", "zh"] and list(grids[0].columns) == ["en", "zh", "fr", "avg"]
    assert grids[0].loc["zh", "avg"] == pytest.approx(20.0)  # FT (paper order): mean of en and fr, edited in zh
    _by_label(app.selectbox, "Method").select("MEMLA").run()
    grids = [d.value for d in app.dataframe if d.value.index.name == "source"]
    assert grids[0].loc["zh", "avg"] == pytest.approx(80.0)

    failed = [{**row, "ES": None, "PS": None, "NS": None, "error": "EditError: no neurons"} for row in rows[:3]]
    path = _write_results("allfailed", failed)
    app.run()  # the list of files is read on every run
    _by_label(app.selectbox, "Results file").select(str(path)).run()
    _no_errors(app)
    assert any("Every edit in this file failed" in w.value for w in app.warning)
    assert [m.value for m in app.metric][:3] == ["1", "1", "1"]


def test_a_baseline_field_that_defaults_to_none_can_be_set(app):
    # ROME's layer defaults to None (the architecture's default); the form offers it, empty.
    _load_model(app)
    _pick_fact(app)
    app.switch_page("app_pages/edit.py").run()
    _by_label(app.multiselect, "Methods (several = compared side by side on this fact)").set_value(["rome"]).run()
    if any(r.label == "Start from" for r in app.radio):  # the model type has tuned ROME values
        _by_label(app.radio, "Start from").set_value("paper").run()
    layer = _by_label(app.number_input, "Layer")
    assert layer.value is None and "architecture" in layer.help
    layer.set_value(1).run()
    _by_label(app.number_input, "Steps of δ").set_value(2).run()
    _by_label(app.number_input, "Samples").set_value(8).run()  # key statistics: a nested field (stats.samples)
    _by_label(app.multiselect, "Evaluated in (target languages)").set_value(["en"]).run()
    _by_label(app.button, "Apply edit").click().run()
    _no_errors(app)
    edit = app.session_state["edits"]["rome"].edit
    assert edit.config["layer"] == 1 and edit.config["stats"]["samples"] == 8
    assert edit.config["v_steps"] == 2 and list(edit.weight_deltas) == ["model.layers.1.mlp.down_proj.weight"]
