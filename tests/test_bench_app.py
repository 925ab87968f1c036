"""The Benchmark page across runs and reloads (issue 13): the form keeps its values after a run,
Start on a finished file says what it will do, and a run still going after a reload (a new
AppTest session in the same server process) is found again by its results file, with progress
and Stop. Tiny random Gemma-3 checkpoint."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest
from app_helpers import _by_label, _no_errors, APP, fill_bench_form

from memla_core.bench import BenchConfig, results_dir
from memla_core.bench.plan import resume_plan


@pytest.fixture(autouse=True)
def _tiny_model_loads_by_itself(tiny_checkpoints, monkeypatch):
    monkeypatch.setenv("MEMLA_APP_MODEL", str(tiny_checkpoints["gemma3_text"]))
    monkeypatch.setenv("MEMLA_APP_AUTOLOAD", "1")  # as for the embedded default model


def _open(link: dict[str, str] | None = None) -> AppTest:
    """A new session (a reload, or a link) on the Benchmark page."""
    at = AppTest.from_file(APP, default_timeout=180)
    for key, value in (link or {}).items():
        at.query_params[key] = value
    at.run()
    at.switch_page("app_pages/benchmark.py").run()
    _no_errors(at)
    return at


def _url(at: AppTest) -> dict[str, str]:
    return {key: value[-1] if isinstance(value, list) else value for key, value in at.query_params.items()}


def _texts(at: AppTest) -> str:
    return " ".join(e.value for kind in (at.info, at.success, at.warning, at.error) for e in kind)


def test_resume_plan_counts_what_the_file_holds(tiny_models, bundled, tmp_path):
    from memla_core.bench.store import rows_frame, write_results

    lm = tiny_models["gemma3_text"]
    config = BenchConfig(methods=("ike", "ft"), fact_ids=("geo-capital-france", "geo-capital-japan"),
                         target_languages=("en", "zh"), out=tmp_path / "plan.csv")
    fresh = resume_plan(config, lm, bundled)
    assert (fresh.total, fresh.done, fresh.in_file) == (4, 0, 0)
    assert fresh.describe() == "Computing 4 edits into plan.csv."
    base = {"model": lm.key, "seed": 0, "settings": "{}", "error": "", "source_lang": "en", "ES": 1.0}
    rows = [{**base, "fact_id": "geo-capital-france", "method": "ike", "target_lang": t} for t in ("en", "zh")]
    rows.append({**base, "fact_id": "geo-capital-japan", "method": "ike", "target_lang": "en"})  # half-written
    write_results(config.out, rows_frame(rows))
    plan = resume_plan(config, lm, bundled)
    assert (plan.total, plan.done, plan.remaining, plan.in_file) == (4, 1, 3, 2)
    assert plan.describe() == "Resuming plan.csv: 1 of 4 edits is already in it; the remaining 3 are computed now."
    one = resume_plan(BenchConfig(methods=("ike",), fact_ids=("geo-capital-france",), target_languages=("en", "zh"),
                                  out=config.out), lm, bundled)
    assert one.nothing_left and one.describe() == "Nothing left to do: plan.csv already holds the 1 edit of these settings."
    again = resume_plan(BenchConfig(methods=("ike",), fact_ids=("geo-capital-france",), target_languages=("en", "zh"),
                                    out=config.out, overwrite=True), lm, bundled)
    assert not again.nothing_left and again.describe().startswith("Starting over: the 2 edits in plan.csv are discarded")


def test_the_form_keeps_its_values_and_start_again_says_what_it_will_do():
    at = _open()
    fill_bench_form(at, "keep", facts=1, methods=["ike"])
    assert "Computing 1 edit into keep.csv." in _texts(at)
    job = at.session_state["bench_job"]
    assert job.wait(300).state == "done", job.error
    at.run()
    _no_errors(at)
    assert "The last run finished" in _texts(at)
    # The form shows the finished run's values, not the defaults.
    assert _by_label(at.multiselect, "Methods").value == ["ike"]
    assert _by_label(at.multiselect, "Evaluated in (target languages)").value == ["en", "zh"]
    assert _by_label(at.number_input, "Number of facts (the first N)").value == 1
    assert _by_label(at.number_input, "Edit steps").value == 3
    assert _by_label(at.text_input, "Results file").value == "keep"
    # Start again, unchanged: nothing is run, and the page says why in words.
    _by_label(at.button, "Start the benchmark").click().run()
    _no_errors(at)
    shown = _texts(at)
    assert "Nothing left to do: keep.csv already holds the 1 edit of these settings." in shown
    assert at.session_state["bench_job"] is job
    assert "--overwrite" not in shown and "--out" not in shown and '{"' not in shown
    # One more fact: the run resumes, and says so.
    _by_label(at.number_input, "Number of facts (the first N)").set_value(2)
    _by_label(at.button, "Start the benchmark").click().run()
    _no_errors(at)
    assert "Resuming keep.csv: 1 of 2 edits is already in it; the remaining 1 is computed now." in _texts(at)
    resumed = at.session_state["bench_job"]
    assert resumed is not job and resumed.wait(300).state == "done", resumed.error
    assert resumed.status().groups_computed == 1


def test_a_running_benchmark_is_found_again_after_a_reload_and_stopped():
    first = _open()
    fill_bench_form(first, "reloaded", facts=40, methods=["memla"])
    job = first.session_state["bench_job"]
    try:
        assert job.status().active  # 40 facts take far longer than a page run
        assert _url(first)["bench"] == "reloaded"
        assert (results_dir() / "reloaded.csv.lock").exists()

        # A reload of that URL: a new session finds the run by its results file.
        reloaded = _open(_url(first))
        assert reloaded.session_state["bench_job"] is job
        assert any(p.proto.text.startswith("Running") for p in reloaded.get("progress"))
        assert not _by_label(reloaded.button, "Stop the benchmark").disabled

        # A session whose URL lost it (a bookmark of the bare page) is offered the run to watch.
        other = _open()
        assert other.session_state["bench_job"] is None
        assert "A benchmark is still writing **reloaded.csv**" in _texts(other)
        _by_label(other.button, "Show its progress and Stop").click().run()
        _no_errors(other)
        assert other.session_state["bench_job"] is job

        # Start on the file it writes, from a fourth session: that run is shown, not "the file is busy".
        fourth = _open()
        fill_bench_form(fourth, "reloaded", facts=40, methods=["memla"])
        assert "A benchmark is already writing reloaded.csv: here is its progress" in _texts(fourth)
        assert fourth.session_state["bench_job"] is job
        _by_label(fourth.button, "Stop the benchmark").click().run()
        assert job.wait(120).state == "cancelled"
        fourth.run()
        _no_errors(fourth)
        assert "The last run was stopped" in _texts(fourth)
        assert not (results_dir() / "reloaded.csv.lock").exists()

        # The session that found the run after the reload shows its settings in the form, not the
        # defaults: Start resumes that run.
        reloaded.run()
        _no_errors(reloaded)
        assert _by_label(reloaded.text_input, "Results file").value == "reloaded"
        assert _by_label(reloaded.multiselect, "Methods").value == ["memla"]
        assert _by_label(reloaded.multiselect, "Evaluated in (target languages)").value == ["en", "zh"]
        assert _by_label(reloaded.number_input, "Number of facts (the first N)").value == 40
        assert _by_label(reloaded.number_input, "IG steps (knowledge neurons)").value == 2
        assert _by_label(reloaded.number_input, "Edit steps").value == 3
    finally:
        job.cancel()
        job.wait(120)


def _shown(frame_element):
    """The text a table shows: its Styler's display values, else its data."""
    from streamlit import dataframe_util

    display = frame_element.proto.arrow_data.styler.display_values
    return dataframe_util.convert_arrow_bytes_to_pandas_df(display) if display else frame_element.value


def test_results_name_methods_by_their_titles_and_never_show_none():
    from memla_core.bench.store import rows_frame, write_results

    base = {"model": "m", "seed": 0, "settings": "{}", "error": "", "seconds_edit": 5.2512, "seconds_eval": 2.0,
            "seconds_neurons": 0.0, "source_lang": "en", "es_definition": "P(new)>P(true)"}
    rows = [{**base, "fact_id": "f1", "method": method, "target_lang": target, "ES": es, "PS": es, "NS": 50.0,
             "QS": None} for method, es in (("memla", 100.0), ("ft", 0.0)) for target in ("en", "zh")]
    write_results(results_dir() / "titles.csv", rows_frame(rows))
    at = _open()
    frames = {id(d): d for d in at.dataframe}
    grid = next(d.value for d in frames.values() if "en-en" in d.value.columns and "MEMLA" in d.value.index)
    assert "FT-L" in grid.index and "FT" not in grid.index and "ft" not in grid.index
    every_row = next(d for d in frames.values() if {"edit language", "target language"} <= set(d.value.columns))
    assert set(every_row.value["method"]) == {"MEMLA", "FT-L"}
    assert {"target language", "seconds per edit", "P(new) before"} <= set(every_row.value.columns)
    assert not {"source_lang", "target_lang", "seconds_edit", "fact_id"} & set(every_row.value.columns)
    timing = next(_shown(d) for d in frames.values() if "degenerate edits" in d.value.columns)
    assert list(timing["method"]) == ["FT-L", "MEMLA"] or list(timing["method"]) == ["MEMLA", "FT-L"]
    assert set(timing["seconds per edit"]) == {"5.25"}
    for element in frames.values():  # no cell reads "None" (or "nan"): missing values are "—"
        shown = _shown(element).astype(str)
        assert not shown.isin(["None", "nan", "<NA>"]).any().any(), shown
    # The downloaded rows stay as `memla bench` writes them, so they can be uploaded again.
    assert "Download titles rows (CSV)" in [el.proto.label for el in at.get("download_button")]
