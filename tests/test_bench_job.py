"""BenchJob: a benchmark on a background thread that can be watched, stopped and resumed."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from memla_core.bench import BenchConfig, BenchConfigError, BenchJob, KEY_COLUMNS, METRIC_COLUMNS, run_bench
from memla_core.bench.summaries import run_totals
from memla_core.session import Cancelled

from conftest import changed_since, snapshot

FAST = {"neurons.steps": 2, "max_steps": 4}
COMPARED = [*KEY_COLUMNS, "target_lang", *METRIC_COLUMNS, "error", "settings"]


def _config(out: Path, **changes) -> BenchConfig:
    settings = dict(
        methods=("memla", "ike"), fact_ids=("geo-capital-france", "geo-capital-japan"),
        target_languages=("en", "zh"), common_overrides=FAST, out=out,
    )
    settings.update(changes)
    return BenchConfig(**settings)


def _rows(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[COMPARED].sort_values([*KEY_COLUMNS, "target_lang"]).reset_index(drop=True)


def test_job_runs_to_the_same_rows_as_run_bench(tiny_models, bundled, tmp_path):
    lm = tiny_models["llama"]
    direct = run_bench(_config(tmp_path / "direct.csv"), lm=lm, dataset=bundled).results
    job = BenchJob(_config(tmp_path / "job.csv"), lm, bundled).start()
    status = job.wait(120)
    assert status.state == "done", job.error
    assert (status.facts_done, status.facts_total) == (2, 2)
    assert status.groups_computed == 4 and status.groups_failed == 0
    assert status.finished is not None and status.elapsed_s > 0
    pd.testing.assert_frame_equal(_rows(job.results()), _rows(direct))
    totals = run_totals(job.results())
    assert totals["facts"] == 2 and totals["edits"] == 4 and totals["failed"] == 0 and totals["seconds"] > 0


def test_stopping_mid_group_keeps_finished_groups_and_the_model_intact(tiny_models, bundled, tmp_path):
    lm = tiny_models["llama"]
    before = snapshot(lm)
    config = _config(tmp_path / "stopped.csv")
    # The job needs the model's lock for each group: holding it parks the job before its first group,
    # so the stop request is certain to arrive while the job is running.
    with lm.lock:
        job = BenchJob(config, lm, bundled).start()
        assert job.status().active
        job.cancel()
    status = job.wait(120)
    assert status.state == "cancelled" and isinstance(job.error, Cancelled)
    assert status.groups_computed == 0 and job.results().empty
    assert not changed_since(lm, before)

    resumed = BenchJob(config, lm, bundled).start()
    assert resumed.wait(120).state == "done", resumed.error
    assert len(resumed.results()) == 2 * 2 * 2  # facts × methods × targets


def test_stop_between_groups_then_resume_computes_only_the_rest(tiny_models, bundled, tmp_path):
    lm = tiny_models["gpt2"]
    config = _config(tmp_path / "partial.csv")
    job = BenchJob(config, lm, bundled)
    job._group_done = lambda key, rows, job=job, done=BenchJob._group_done: (done(job, key, rows), job.cancel())
    assert job.start().wait(120).state == "cancelled"
    assert job.status().groups_computed == 1
    assert len(job.results()) == 2  # one group: two target languages

    rest = BenchJob(config, lm, bundled).start()
    assert rest.wait(120).state == "done", rest.error
    assert rest.status().groups_computed == 3
    uninterrupted = run_bench(_config(tmp_path / "whole.csv"), lm=lm, dataset=bundled).results
    pd.testing.assert_frame_equal(_rows(rest.results()), _rows(uninterrupted))


def test_two_jobs_never_write_one_file(tiny_models, bundled, tmp_path):
    lm = tiny_models["gpt2"]
    config = _config(tmp_path / "shared.csv")
    with lm.lock:
        first = BenchJob(config, lm, bundled).start()
        with pytest.raises(BenchConfigError, match="already writing"):
            BenchJob(config, lm, bundled).start()
        first.cancel()
    assert first.wait(120).state == "cancelled"
    assert BenchJob(config, lm, bundled).start().wait(120).state == "done"


def test_a_failing_run_reports_its_error(tiny_models, bundled, tmp_path):
    lm = tiny_models["gpt2"]
    job = BenchJob(_config(tmp_path / "bad.csv", source_languages=("xx",)), lm, bundled).start()
    assert job.wait(60).state == "failed"
    assert isinstance(job.error, BenchConfigError) and "xx" in str(job.error)
