"""The Benchmark page on a sequential run's results file: the curves of retention, ability
accuracy and drift against the number of edits, per method (issue 14, item 5). Hand-made rows,
tiny random Gemma-3 checkpoint (the page needs a model only to run, not to show results)."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest
from app_helpers import APP, _no_errors

from memla_core.bench import results_dir
from memla_core.bench.store import rows_frame, write_results


@pytest.fixture(autouse=True)
def _tiny_model_loads_by_itself(tiny_checkpoints, monkeypatch):
    monkeypatch.setenv("MEMLA_APP_MODEL", str(tiny_checkpoints["gemma3_text"]))
    monkeypatch.setenv("MEMLA_APP_AUTOLOAD", "1")


def _values(array) -> list:
    """A trace's x or y as the chart's JSON holds it: a list, or plotly's typed-array encoding."""
    if isinstance(array, dict) and "bdata" in array:
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"]).tolist()
    return list(array)


def _sequential_rows() -> list[dict]:
    base = {"run": "sequential", "source_lang": "en", "model": "m", "seed": 0, "settings": "{}", "error": "",
            "run_settings": '{"kind": "sequential"}'}
    rows = []
    for method, decay in (("memla", 10.0), ("ft", 30.0)):
        for step in (0, 1, 2, 3):
            for target in ("en", "zh"):
                rows.append({**base, "method": method, "step": step, "edits": step, "role": "model", "fact_id": "",
                             "target_lang": target, "ability_accuracy": 60.0 - decay * step / 10, "drift": 0.1 * step})
                if step == 0:
                    continue
                rows.append({**base, "method": method, "step": step, "edits": step, "role": "newest",
                             "fact_id": f"f{step}", "target_lang": target, "ES": 100.0, "NS": 50.0})
                for earlier in range(1, step):
                    rows.append({**base, "method": method, "step": step, "edits": step, "role": "earlier",
                                 "fact_id": f"f{earlier}", "target_lang": target, "ES": 100.0 - decay * step,
                                 "NS": 50.0})
    return rows


def test_the_benchmark_page_draws_curves_of_a_sequential_run():
    write_results(results_dir() / "sequence.csv", rows_frame(_sequential_rows()))
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    at.switch_page("app_pages/benchmark.py").run()
    _no_errors(at)
    assert any("Sequential edits" in h.value for h in at.subheader)
    figures = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    titles = {fig["layout"]["title"]["text"]: fig for fig in figures}
    assert {"retention (ES of earlier edits)", "ability accuracy (%)", "drift (KL, nats/token)"} <= set(titles)
    retention = titles["retention (ES of earlier edits)"]
    lines = {trace["name"]: trace for trace in retention["data"]}
    assert set(lines) == {"MEMLA", "FT-L"}  # one line per method, by its title
    assert _values(lines["FT-L"]["x"]) == [2, 3] and _values(lines["FT-L"]["y"]) == [40.0, 10.0]  # none before 2 edits
    accuracy = {trace["name"]: trace for trace in titles["ability accuracy (%)"]["data"]}
    assert _values(accuracy["MEMLA"]["x"]) == [0, 1, 2, 3] and _values(accuracy["MEMLA"]["y"])[0] == 60.0
    # The paper's tables are not drawn for such a file; the curve table is, with its download.
    labels = [el.proto.label for el in at.get("download_button")]
    assert any(label.startswith("Download sequence curve") for label in labels)
    assert "Tables 3–4 (method × target)" not in [tab.label for tab in at.tabs]  # the single-edit results tabs


def _by_label(elements, label):
    return next(e for e in elements if e.label == label)


def test_a_sequential_run_starts_from_the_form_and_its_curves_show():
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    at.switch_page("app_pages/benchmark.py").run()
    _no_errors(at)
    _by_label(at.multiselect, "Methods").set_value(["ft"])
    _by_label(at.multiselect, "Evaluated in (target languages)").set_value(["en", "zh"])
    _by_label(at.number_input, "Number of facts (the first N)").set_value(2)
    _by_label(at.number_input, "Edit steps").set_value(2)
    _by_label(at.radio, "Kind of run").set_value("sequential")
    _by_label(at.number_input, "Edits in a row (N)").set_value(2)
    _by_label(at.number_input, "Score every E edits").set_value(1)
    _by_label(at.text_input, "Results file").input("chain-from-form")
    _by_label(at.button, "Start the benchmark").click().run()
    _no_errors(at)
    job = at.session_state["bench_job"]
    assert job.series is not None and (job.series.kind, job.series.edits, job.series.eval_every) == ("sequential", 2, 1)
    assert job.wait(300).state == "done", job.error
    assert job.status().unit == "steps" and job.status().groups_computed == 3  # step 0 (unedited) and two pushes
    at.run()
    _no_errors(at)
    assert "The last run finished" in " ".join(e.value for e in at.success)
    assert _by_label(at.radio, "Kind of run").value == "sequential"  # the form keeps the run's kind
    assert any("Sequential edits" in h.value for h in at.subheader)  # its curves, under the results tab
    # A batch run of a method that cannot batch is refused with the methods that can.
    _by_label(at.multiselect, "Methods").set_value(["rome"])
    _by_label(at.radio, "Kind of run").set_value("batch")
    _by_label(at.button, "Start the benchmark").click().run()
    assert any("batch" in e.value.lower() and "MEMLA" in e.value for e in at.error)
