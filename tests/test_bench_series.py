"""Sequential and batch benchmark runs (issue 14, item 4) on a tiny GPT-2: rows and retention,
resume of an interrupted run equals an uninterrupted one, batch rows, refusal of methods that
cannot batch, and the curve and summary tables on hand-made rows."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from transformers import set_seed

from conftest import changed_since, snapshot
from memla_core.bench import BenchConfig, BenchConfigError, run_bench
from memla_core.bench.config import resolve_method
from memla_core.bench.series import SeriesConfig, run_series
from memla_core.bench.series_summaries import curve_table, curve_table_wide, series_summary, series_summary_wide
from memla_core.bench.store import SERIES_KEY_COLUMNS, is_series, read_results
from memla_core.cli import main as cli_main
from memla_core.editing import EditRequest, EditStack
from memla_core.evaluation import evaluate

pytestmark = pytest.mark.usefixtures("one_thread")

FACTS = ("geo-capital-france", "geo-capital-japan", "geo-language-brazil", "geo-capital-germany")
TARGETS = ("en", "zh")
COMPARED = [*SERIES_KEY_COLUMNS, "edits", "ES", "PS", "NS", "p_new", "answer", "ES_before", "ability_accuracy",
            "drift", "error", "settings", "run_settings"]


def _config(out: Path, **changes) -> BenchConfig:
    settings = dict(methods=("ft",), fact_ids=FACTS[:3], target_languages=TARGETS, out=out,
                    common_overrides={"edit_steps": 3})
    settings.update(changes)
    return BenchConfig(**settings)


def _sequential(edits: int = 3, eval_every: int = 2) -> SeriesConfig:
    return SeriesConfig("sequential", edits=edits, eval_every=eval_every, ability_items=1, ability_sentences=1)


def _compared(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[COMPARED].sort_values(list(SERIES_KEY_COLUMNS)).reset_index(drop=True)


def test_sequential_rows_hold_every_edit_still_on_the_stack(tiny_models, bundled, tmp_path):
    lm = tiny_models["gpt2"]
    before = snapshot(lm)
    config = _config(tmp_path / "seq.csv")
    outcome = run_series(config, _sequential(), lm=lm, dataset=bundled)
    assert not changed_since(lm, before)  # the stack is reverted after the run
    rows = read_results(config.out)
    assert is_series(rows) and set(rows["run"]) == {"sequential"}
    assert (outcome.computed, outcome.skipped, outcome.failed) == (3, 0, 0)  # steps 0, 2 (eval every 2) and 3 (last)
    steps = {int(step): dict(group["role"].value_counts()) for step, group in rows.groupby("step")}
    assert set(steps) == {0, 2, 3}
    assert steps[0] == {"unedited": 6, "model": 2}  # 3 facts x 2 targets, then en and zh ability rows
    assert steps[2] == {"newest": 2, "earlier": 2, "model": 2}
    assert steps[3] == {"newest": 2, "earlier": 4, "model": 2}
    last = rows[rows["step"] == 3]
    assert set(last.loc[last.role == "newest", "fact_id"]) == {FACTS[2]}
    assert set(last.loc[last.role == "earlier", "fact_id"]) == set(FACTS[:2])
    assert (last["edits"] == 3).all() and (rows.loc[rows.step == 0, "edits"] == 0).all()
    model = rows[rows.role == "model"].set_index(["step", "target_lang"])
    assert (model.loc[0, "drift"] == 0).all()
    assert (model.loc[3, "drift"] > 0).all()  # three fine-tuned edits move the next-token distributions
    assert model["ability_accuracy"].between(0, 100).all()

    # Retention is the earlier edit's ES on the model holding all three edits, computed by hand.
    resolved = resolve_method("ft", lm, config)
    stack = EditStack(lm)
    try:
        for fact_id in FACTS[:3]:
            set_seed(config.seed)
            stack.push(resolved.editor(), EditRequest(bundled.get(fact_id), "en"))
        by_hand = evaluate(lm, bundled.get(FACTS[0]), list(TARGETS), edit=stack.evaluation_edit("en")).summary
    finally:
        stack.revert_all()
    first = last[(last.fact_id == FACTS[0])].set_index("target_lang")
    for row in by_hand.to_dict("records"):
        assert first.loc[row["target_lang"], "ES"] == row["ES"]
        assert first.loc[row["target_lang"], "p_new"] == pytest.approx(row["p_new"], rel=1e-6)
    unedited = rows[(rows.step == 0) & (rows.fact_id == FACTS[0])].set_index("target_lang")
    assert (first["ES_before"] == unedited["ES"]).all()


def test_a_stopped_sequential_run_resumes_to_the_same_rows(tiny_models, bundled, tmp_path):
    lm = tiny_models["gpt2"]
    series = _sequential(edits=3, eval_every=1)
    whole = run_series(_config(tmp_path / "whole.csv"), series, lm=lm, dataset=bundled).results

    class Stop(Exception):
        pass

    def stop_after_step_2(key, rows):
        if key[2] == 2:
            raise Stop

    config = _config(tmp_path / "stopped.csv")
    with pytest.raises(Stop):
        run_series(config, series, lm=lm, dataset=bundled, after_step=stop_after_step_2)
    # A crash in the middle of step 2's write: its last (model) line is cut off.
    text = config.out.read_text(encoding="utf-8")
    config.out.write_text(text[: text.rstrip("\n").rfind("\n") + 20], encoding="utf-8")
    before = snapshot(lm)
    resumed = run_series(config, series, lm=lm, dataset=bundled)
    assert not changed_since(lm, before)
    assert (resumed.computed, resumed.skipped) == (2, 2)  # steps 0 and 1 kept; 2 (cut off) and 3 computed
    pd.testing.assert_frame_equal(_compared(resumed.results), _compared(whole))
    again = run_series(config, series, lm=lm, dataset=bundled)
    assert (again.computed, again.skipped) == (0, 4)


def test_batch_run_scores_every_fact_of_each_batch(tiny_models, bundled, tmp_path):
    lm = tiny_models["gpt2"]
    before = snapshot(lm)
    config = _config(tmp_path / "batch.csv", methods=("ft", "ike"), fact_ids=FACTS)
    series = SeriesConfig("batch", edits=2, ability_items=1, ability_sentences=1)
    outcome = run_series(config, series, lm=lm, dataset=bundled)
    assert not changed_since(lm, before)
    rows = outcome.results
    assert set(rows["run"]) == {"batch"} and (outcome.computed, outcome.failed) == (6, 0)  # 2 methods x (0, 1, 2)
    for method in ("ft", "ike"):
        mine = rows[rows.method == method]
        batch = mine[mine.role == "batch"]
        assert set(batch["step"]) == {1, 2} and (batch["edits"] == 2).all()
        assert set(batch.loc[batch.step == 1, "fact_id"]) == set(FACTS[:2])
        assert set(batch.loc[batch.step == 2, "fact_id"]) == set(FACTS[2:])
        assert len(batch) == 4 * 2 and len(mine[mine.role == "model"]) == 3 * 2
        assert (batch["error"] == "").all() and (batch["ES"] >= 0).all()
    ft_model = rows[(rows.method == "ft") & (rows.role == "model")]
    assert (ft_model["error"] == "").all() and ft_model["ability_accuracy"].notna().all()
    # IKE's batch context before a probe item may outgrow the tiny model's 256 positions: said, not a crash.
    ike_model = rows[(rows.method == "ike") & (rows.role == "model") & (rows.step > 0)]
    assert (ike_model["error"] == "").all() or ike_model["error"].str.startswith("ability not measured").all()
    assert run_series(config, series, lm=lm, dataset=bundled).skipped == 6  # resumed: nothing left
    with pytest.raises(BenchConfigError, match="other run settings.*edits"):
        run_series(config, SeriesConfig("batch", edits=4, ability_items=1, ability_sentences=1), lm=lm, dataset=bundled)
    with pytest.raises(BenchConfigError, match="sequential or batch run"):
        run_bench(config, lm=lm, dataset=bundled)  # the single-edit runner leaves such a file alone


def test_batch_refuses_methods_that_edit_one_fact_at_a_time(tmp_path, capsys):
    config = _config(tmp_path / "r.csv", methods=("rome", "ft", "mend"))
    with pytest.raises(BenchConfigError, match=r"ROME, MEND edit one fact.*can: MEMLA \(memla\), FT-L \(ft\)"):
        run_series(config, SeriesConfig("batch", edits=2), lm=object())  # before any model or data
    assert cli_main(["bench", "--batch-size", "2", "--methods", "rome", "--out", str(tmp_path / "c.csv")]) != 0
    assert "ROME edits one fact at a time" in capsys.readouterr().err
    assert cli_main(["bench", "--batch-size", "2", "--sequential", "3", "--out", str(tmp_path / "c.csv")]) != 0


def test_cli_sequential_prints_curves_and_summary(tiny_checkpoints, tmp_path, capsys):
    out = tmp_path / "cli.csv"
    code = cli_main(["bench", "--model", str(tiny_checkpoints["gpt2"]), "--device", "cpu", "--methods", "ft",
                     "--fact-ids", ",".join(FACTS[:2]), "--target-langs", "en,zh", "--edit-steps", "2",
                     "--sequential", "2", "--ability-items", "1", "--ability-sentences", "1", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "retention" in printed and "en-avg" in printed and "FT-L" in printed
    assert set(read_results(out)["step"]) == {0, 1, 2}


# --------------------------------------------------------------------------- summaries (pure)


def _fact(step, role, fact, target, es, ns, run="sequential", method="ft", edits=None, error=""):
    return {"run": run, "method": method, "source_lang": "en", "step": step, "edits": step if edits is None else edits,
            "role": role, "fact_id": fact, "target_lang": target, "ES": es, "NS": ns, "error": error,
            "ability_accuracy": math.nan, "drift": math.nan}


def _model(step, target, accuracy, drift, **kw):
    return {**_fact(step, "model", "", target, math.nan, math.nan, **kw), "ability_accuracy": accuracy, "drift": drift}


@pytest.fixture
def handmade() -> pd.DataFrame:
    rows = [
        _fact(0, "unedited", "a", "en", 0, 40), _fact(0, "unedited", "b", "en", 0, 60),
        _fact(0, "unedited", "a", "zh", 0, 20), _fact(0, "unedited", "b", "zh", 100, 20),
        _model(0, "en", 60, 0.0), _model(0, "zh", 50, 0.0),
        _fact(2, "newest", "b", "en", 100, 30), _fact(2, "earlier", "a", "en", 0, 50),
        _fact(2, "newest", "b", "zh", 100, 10), _fact(2, "earlier", "a", "zh", 100, 10),
        _fact(2, "earlier", "c", "zh", 100, 90, error="EditError: failed"),  # a failed edit counts nowhere
        _model(2, "en", 40, 0.5), _model(2, "zh", 45, 0.25),
        # A batch run: two batches of 2 at 2 edits pool their facts; the model rows average.
        _fact(1, "batch", "a", "en", 100, 20, run="batch", edits=2), _fact(1, "batch", "b", "en", 0, 40, run="batch", edits=2),
        _fact(2, "batch", "c", "en", 100, 60, run="batch", edits=2), _fact(2, "batch", "d", "en", 100, 80, run="batch", edits=2),
        _model(1, "en", 50, 0.2, run="batch", edits=2), _model(2, "en", 30, 0.4, run="batch", edits=2),
    ]
    return pd.DataFrame(rows)


def test_curve_table_by_hand(handmade):
    curve = curve_table(handmade).set_index(["run", "edits", "target_lang"])
    seq = curve.loc["sequential"]
    assert seq.loc[(2, "en"), "ES_newest"] == 100 and seq.loc[(2, "en"), "retention"] == 0
    assert seq.loc[(2, "en"), "ES_all"] == 50 and seq.loc[(2, "en"), "NS"] == 40
    assert seq.loc[(2, "zh"), "retention"] == 100 and seq.loc[(2, "zh"), "facts"] == 2
    assert seq.loc[(2, "en"), "accuracy"] == 40 and seq.loc[(2, "en"), "drift"] == 0.5
    assert math.isnan(seq.loc[(0, "en"), "ES_newest"]) and math.isnan(seq.loc[(0, "en"), "retention"])
    assert seq.loc[(0, "zh"), "ES_all"] == 50 and seq.loc[(0, "en"), "NS"] == 50
    # avg: the cross-lingual targets (here zh alone).
    assert seq.loc[(2, "avg"), "retention"] == 100 and seq.loc[(2, "avg"), "drift"] == 0.25
    batch = curve.loc["batch"]
    assert batch.loc[(2, "en"), "ES_all"] == 75 and batch.loc[(2, "en"), "NS"] == 50 and batch.loc[(2, "en"), "facts"] == 4
    assert batch.loc[(2, "en"), "accuracy"] == 40 and batch.loc[(2, "en"), "drift"] == pytest.approx(0.3)
    assert math.isnan(batch.loc[(2, "en"), "retention"])
    wide = curve_table_wide(curve_table(handmade), "en")
    assert list(wide["method"].unique()) == ["FT-L"] and "retention" in wide.columns


def test_series_summary_is_paper_shaped(handmade):
    summary = series_summary(curve_table(handmade))
    value = summary.set_index(["run", "metric", "setting"])["value"]
    assert value["sequential", "retention", "en-en"] == 0 and value["sequential", "retention", "en-avg"] == 100
    assert value["sequential", "accuracy_change", "en-en"] == -20  # 40 after two edits, 60 unedited
    assert value["sequential", "accuracy_change", "en-avg"] == -5
    assert ("batch", "retention", "en-en") not in value.index  # a batch has no earlier edits
    wide = series_summary_wide(summary[summary.run == "sequential"], "en")
    assert list(wide.columns) == ["metric", "method", "edits", "en-en", "en-avg"]
    assert list(wide["metric"])[:2] == ["ES_newest", "retention"] and set(wide["edits"]) == {2}
