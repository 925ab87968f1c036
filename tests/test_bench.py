"""The benchmark runner (resume, sharding, failures) on tiny models, and the paper-shaped summaries
on hand-made rows."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from memla_core.bench import (
    BenchConfig,
    BenchConfigError,
    KEY_COLUMNS,
    METRIC_COLUMNS,
    ablation_table,
    ablation_table_wide,
    canonical_method,
    compare_with_paper,
    load_paper_tables,
    main_table,
    main_table_wide,
    multihop_table,
    multihop_table_wide,
    read_results,
    resolve_method,
    run_bench,
)
from memla_core.bench import runner as runner_module
from memla_core.bench.store import RESULT_COLUMNS, part_path
from memla_core.cli import main as cli_main
from memla_core.editing import Edit, EditDivergedError, MemlaConfig
from memla_core.editing.registry import METHODS, MethodSpec
from memla_core.neurons import NeuronConfig, NeuronSets

FACTS = ("geo-capital-france", "geo-capital-japan", "geo-language-brazil")
FAST = {"neurons.steps": 2, "max_steps": 4}
COMPARED = [*KEY_COLUMNS, "target_lang", *METRIC_COLUMNS, "es_definition", "error", "settings"]


def _metric_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows without timings, in a canonical order: what must agree between runs."""
    return frame[COMPARED].sort_values([*KEY_COLUMNS, "target_lang"]).reset_index(drop=True)


def _config(out: Path, **changes) -> BenchConfig:
    settings = dict(
        methods=("memla", "memla:w/o LIE"), fact_ids=FACTS[:2], target_languages=("en", "zh"),
        common_overrides=FAST, out=out,
    )
    settings.update(changes)
    return BenchConfig(**settings)


# --------------------------------------------------------------------------- configs


def test_method_names_accept_shell_spellings():
    assert canonical_method("MEMLA") == "memla"
    assert canonical_method("memla:wo-lsm") == "memla:w/o LSM"
    assert canonical_method("memla:w/o LIE") == "memla:w/o LIE"
    assert canonical_method("memla:no_lim") == "memla:w/o LIM"
    assert canonical_method("memla:MEMLA") == "memla"
    with pytest.raises(ValueError, match="available"):
        canonical_method("nosuchmethod")
    with pytest.raises(BenchConfigError, match="w/o LSM"):
        canonical_method("memla:wo-everything")


def test_resolve_method_applies_ablation_seed_and_overrides(tiny_models):
    lm = tiny_models["gpt2"]
    config = BenchConfig(
        methods=("memla:wo-lsm",), seed=7,
        common_overrides={"neurons.steps": 3, "no_such_field": 1},  # lenient: skipped where absent
        method_overrides={
            "memla": {"lr": "0.05", "neurons.independent_languages": "en,zh"},
            "*": {"coefficient": "1", "v_steps": 9},  # '*' is lenient too
        },
    )
    run = resolve_method("memla:wo-lsm", lm, config)
    assert run.name == "memla:w/o LSM"
    assert run.config == MemlaConfig(
        mask_lse=False, seed=7, lr=0.05, coefficient=1.0,
        neurons=NeuronConfig(steps=3, independent_languages=("en", "zh")),
    )
    assert run.uses_neurons and '"mask_lse": false' in run.settings
    strict = BenchConfig(method_overrides={"memla": {"learning_rate": 1}})
    with pytest.raises(BenchConfigError, match="learning_rate.*fields: rank_multiplier"):
        resolve_method("memla", lm, strict)
    with pytest.raises(BenchConfigError, match="'max_steps' expects an integer"):
        resolve_method("memla", lm, BenchConfig(method_overrides={"memla": {"max_steps": "many"}}))


def test_bench_config_errors_say_what_to_do(tmp_path):
    with pytest.raises(BenchConfigError, match=r"\.csv"):
        BenchConfig(out=tmp_path / "results.json")
    with pytest.raises(BenchConfigError, match="twice"):
        BenchConfig(methods=("memla", "MEMLA"))
    with pytest.raises(BenchConfigError, match="in none of the"):
        run_bench(BenchConfig(source_languages=("xx",), fact_ids=FACTS[:1], out=tmp_path / "r.csv"), lm=object())


# --------------------------------------------------------------------------- summaries (pure)


def _rows(method: str, source: str, values: dict[str, tuple[float, float, float, float]], fact: str = "f1"):
    return [
        {"fact_id": fact, "method": method, "source_lang": source, "target_lang": t,
         "ES": v[0], "PS": v[1], "NS": v[2], "QS": v[3], "error": ""}
        for t, v in values.items()
    ]


@pytest.fixture
def handmade() -> pd.DataFrame:
    nan = math.nan
    rows = []
    rows += _rows("memla", "zh", {"zh": (100, 100, 40, 20), "en": (100, 50, 10, 10), "fr": (0, 50, 0, nan)}, "f1")
    rows += _rows("memla", "zh", {"zh": (100, 0, 20, 0), "en": (0, 50, 30, 10), "fr": (0, 0, 10, nan)}, "f2")
    rows += _rows("memla:w/o LIE", "zh", {"zh": (100, 100, 0, 0), "en": (0, 0, 0, 0), "fr": (100, 0, 0, 0)}, "f1")
    rows += _rows("ft", "en", {"en": (100, 100, 50, nan), "zh": (0, 100, 0, nan), "fr": (100, 0, 50, nan)}, "f1")
    failed = _rows("ft", "en", {"en": (nan,) * 4, "zh": (nan,) * 4, "fr": (nan,) * 4}, "f2")
    rows += [{**r, "error": "EditDivergedError: loss became nan"} for r in failed]
    return pd.DataFrame(rows)


def test_main_table_is_paper_shaped_with_hand_computed_values(handmade):
    paper = load_paper_tables()
    main = main_table(handmade)
    assert list(main.columns) == list(paper.main.columns)
    cell = main.set_index(["metric", "method", "source_lang", "target_lang"])["value"]
    assert cell["ES", "MEMLA", "zh", "en"] == 50  # mean over facts f1, f2
    assert cell["NS", "MEMLA", "zh", "zh"] == 30
    assert cell["ES", "MEMLA", "zh", "avg"] == 25  # mean of cross-lingual cells en (50) and fr (0)
    assert cell["PS", "MEMLA", "zh", "avg"] == pytest.approx((50 + 25) / 2)
    assert cell["ES", "FT-L", "en", "avg"] == 50  # the failed edit of f2 is left out
    assert ("QS", "MEMLA", "zh", "zh") not in cell.index  # QS belongs to Table 6
    assert set(main.loc[main.source_lang == "zh", "table"]) == {4}
    assert set(main.loc[main.source_lang == "en", "table"]) == {3}
    wide = main_table_wide(main, "zh")
    assert list(wide.columns) == ["metric", "method", "zh-en", "zh-zh", "zh-fr", "zh-avg"]  # paper order
    assert list(wide["metric"]) == ["ES", "ES", "PS", "PS", "NS", "NS"]
    assert list(wide["method"][:2]) == ["MEMLA", "MEMLA w/o LIE"]


def test_ablation_and_multihop_tables(handmade):
    paper = load_paper_tables()
    ablation = ablation_table(handmade)
    assert list(ablation.columns) == list(paper.ablation.columns)
    assert list(dict.fromkeys(ablation["variant"])) == ["MEMLA", "w/o LIE"]
    assert list(ablation["setting"][:6]) == ["zh-zh"] * 3 + ["zh-avg"] * 3
    value = ablation.set_index(["variant", "setting", "metric"])["value"]
    assert value["w/o LIE", "zh-avg", "ES"] == 50
    assert list(ablation_table_wide(ablation).columns) == [
        "variant", "zh-zh ES", "zh-zh PS", "zh-zh NS", "zh-avg ES", "zh-avg PS", "zh-avg NS",
    ]
    assert ablation_table(handmade[handmade.method != "memla:w/o LIE"]).empty  # MEMLA alone: no ablation

    multihop = multihop_table(handmade)
    assert list(multihop.columns) == list(paper.multihop.columns)
    qs = multihop.set_index(["method", "setting"])["value"]
    assert qs["MEMLA", "zh-zh"] == 10
    assert qs["MEMLA", "zh-avg"] == 10  # only en has multi-hop answers: mean of f1, f2 = 10
    assert ("FT-L", "en-en") not in qs.index  # no QS values at all
    assert list(multihop_table_wide(multihop).columns) == ["method", "zh-zh", "zh-avg"]


def test_comparison_joins_the_paper_numbers(handmade):
    comparison = compare_with_paper(handmade, load_paper_tables())
    row = comparison[(comparison.table == "4") & (comparison.metric == "ES") & (comparison.method == "MEMLA")
                     & (comparison.target_lang == "avg")].iloc[0]
    assert row.paper == 65.52 and row.ours == 25 and row.difference == pytest.approx(25 - 65.52)
    table5 = comparison[(comparison.table == "5") & (comparison.method == "MEMLA w/o LIE")]
    assert table5.paper.notna().all()
    ft = comparison.set_index(["table", "metric", "method", "source_lang", "target_lang"]).loc["3", "ES", "FT-L", "en", "zh"]
    assert ft.paper == 64.40 and ft.ours == 0 and ft.difference == -64.40


# --------------------------------------------------------------------------- runner on tiny models


def test_run_resumes_after_interruption_with_identical_rows(tiny_models, bundled, tmp_path, monkeypatch):
    lm = tiny_models["gpt2"]
    calls: list[tuple[str, str]] = []
    real_find = runner_module.find_neurons

    def counting_find(lm_, fact, source, config, **kwargs):
        calls.append((fact.example_id, source))
        return real_find(lm_, fact, source, config, **kwargs)

    monkeypatch.setattr(runner_module, "find_neurons", counting_find)
    whole = run_bench(_config(tmp_path / "whole.csv"), lm=lm, dataset=bundled)
    assert whole.computed == 4 and whole.skipped == 0
    assert calls == [(FACTS[0], "en"), (FACTS[1], "en")]  # once per (fact, source), shared by both variants
    rows = read_results(tmp_path / "whole.csv")
    assert list(rows.columns) == list(RESULT_COLUMNS)
    assert len(rows) == 2 * 2 * 2 and (rows["error"] == "").all()
    assert set(rows["method"]) == {"memla", "memla:w/o LIE"}
    assert rows[list(METRIC_COLUMNS[:3])].notna().all().all()

    class Stop(Exception):
        pass

    flushed: list = []

    def stop_at_third(key, group_rows):
        flushed.append(key)
        if len(flushed) == 3:
            raise Stop

    out = tmp_path / "resumed.csv"
    with pytest.raises(Stop):
        run_bench(_config(out), lm=lm, dataset=bundled, after_group=stop_at_third)
    partial = read_results(out)
    assert len(partial) == 3 * 2  # three groups were flushed before the interruption
    # A crash can also leave a group written in part and a line cut off mid-write.
    lines = out.read_text(encoding="utf-8").splitlines(keepends=True)
    out.write_text("".join(lines[:-1]) + lines[-1][:15], encoding="utf-8")

    resumed = run_bench(_config(out), lm=lm, dataset=bundled)
    assert resumed.skipped == 2 and resumed.computed == 2
    pd.testing.assert_frame_equal(_metric_rows(resumed.results), _metric_rows(rows))
    pd.testing.assert_frame_equal(_metric_rows(read_results(out)), _metric_rows(rows))

    again = run_bench(_config(out), lm=lm, dataset=bundled)
    assert again.computed == 0 and again.skipped == 4
    with pytest.raises(BenchConfigError, match="--overwrite"):
        run_bench(_config(out, common_overrides={**FAST, "neurons.steps": 3}), lm=lm, dataset=bundled)


def test_health_reference_is_captured_once_per_fact_with_the_same_verdicts(tiny_models, bundled, tmp_path, monkeypatch):
    lm = tiny_models["gpt2"]
    captured: list[str] = []
    bases: list[object] = []
    real_capture = runner_module.capture_reference

    def counting_capture(lm_, fact, languages, base=None):
        captured.append(fact.example_id)
        bases.append(base)
        return real_capture(lm_, fact, languages, base=base)

    monkeypatch.setattr(runner_module, "capture_reference", counting_capture)
    shared = run_bench(_config(tmp_path / "shared.csv"), lm=lm, dataset=bundled)
    assert captured == [FACTS[0], FACTS[1]]  # two methods per fact, one reference per fact
    # The second fact reuses the first's ordinary-sentence distributions (they are fact-independent).
    assert bases[0] is None and bases[1] is not None
    # The shared reference gives the verdicts a fresh reference per edit gives.
    monkeypatch.setattr(runner_module.UneditedFact, "health_reference", lambda self: None)
    fresh = run_bench(_config(tmp_path / "fresh.csv"), lm=lm, dataset=bundled)
    assert list(shared.results["health"]) == list(fresh.results["health"])
    assert (shared.results["health"] != "").all()


def test_failed_edit_is_a_row_not_a_crash(tiny_models, bundled, tmp_path, monkeypatch):
    def no_neurons(lm_, fact, source, config, **_kwargs):
        empty = frozenset()
        return NeuronSets(fact.example_id, source, {source: empty}, empty, empty, config=config)

    monkeypatch.setattr(runner_module, "find_neurons", no_neurons)
    outcome = run_bench(_config(tmp_path / "r.csv", methods=("memla",)), lm=tiny_models["llama"], dataset=bundled)
    assert outcome.computed == 2 and outcome.failed == 2
    rows = read_results(tmp_path / "r.csv")
    assert len(rows) == 4 and rows["error"].str.startswith("EditError: No knowledge neurons").all()
    assert rows["ES"].isna().all()
    assert main_table(rows).empty


@dataclass(frozen=True)
class PrefixConfig:
    """An IKE-like method defined only in this test: new methods need nothing but a registry entry."""

    demonstrations: int = 1
    seed: int = 0
    max_steps: int = 1


class PrefixEditor:
    name = "prefix"

    def __init__(self, config: PrefixConfig = PrefixConfig()):
        self.config = config

    def compute(self, lm, request, on_step=None) -> Edit:
        if self.config.demonstrations < 0:
            raise EditDivergedError("demonstrations < 0", [{"step": 0.0, "loss": math.nan}])
        prompt = request.prompt
        return Edit("prefix", request.fact.example_id, request.source_language,
                    context=f"{prompt.filled()} {prompt.target_new}. " * self.config.demonstrations,
                    config=asdict(self.config))


def test_any_registered_method_runs_and_failures_become_rows(tiny_models, bundled, tmp_path, monkeypatch):
    monkeypatch.setitem(METHODS, "prefix", MethodSpec("prefix", "Prefix", PrefixConfig, PrefixEditor, "test"))
    config = _config(tmp_path / "prefix.csv", methods=("prefix",), seed=5)
    outcome = run_bench(config, lm=tiny_models["opt"], dataset=bundled)
    rows = read_results(tmp_path / "prefix.csv")
    assert outcome.computed == 2 and outcome.failed == 0 and len(rows) == 4
    assert '"max_steps": 4' in rows["settings"][0] and '"seed": 5' in rows["settings"][0]
    assert set(main_table(rows)["method"]) == {"Prefix"}  # the registry title

    broken = _config(tmp_path / "broken.csv", methods=("prefix",), method_overrides={"prefix": {"demonstrations": "-1"}})
    outcome = run_bench(broken, lm=tiny_models["opt"], dataset=bundled)
    rows = read_results(tmp_path / "broken.csv")
    assert outcome.failed == 2 and rows["error"].str.startswith("EditDivergedError: demonstrations").all()
    assert (rows["edit_steps"] == 1).all()


def test_cli_prints_paper_shaped_summary(tiny_checkpoints, tmp_path, capsys):
    out = tmp_path / "cli.csv"
    argv = [
        "bench", "--model", str(tiny_checkpoints["qwen2"]), "--methods", "memla", "--ablations", "wo-lsm",
        "--source-langs", "en", "--target-langs", "en,zh", "--fact-ids", FACTS[0], "--ig-steps", "2",
        "--edit-steps", "3", "--set", "memla.lr=0.01", "--out", str(out), "--parquet",
    ]
    assert cli_main(argv) == 0
    printed = capsys.readouterr().out
    assert "edits written in en (shape of paper Table 3)" in printed
    assert "en-en" in printed and "en-avg" in printed and "MEMLA w/o LSM" in printed
    assert "Against the paper" in printed
    assert out.with_suffix(".parquet").exists()
    main_csv = pd.read_csv(tmp_path / "cli.main.csv")
    assert list(main_csv.columns) == ["table", "metric", "method", "source_lang", "target_lang", "value"]
    assert (tmp_path / "cli.main.en.wide.csv").exists() and (tmp_path / "cli.paper_comparison.csv").exists()
    assert '"lr": 0.01' in read_results(out)["settings"].iloc[0]
    assert cli_main(["bench", "--methods", "memla", "--set", "lr=1", "--out", str(out)]) == 2
    assert "METHOD.FIELD=VALUE" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_accelerate_processes_give_the_same_rows_as_one(tiny_checkpoints, tmp_path):
    common = [
        "--model", str(tiny_checkpoints["gpt2"]), "--device", "cpu", "--methods", "memla", "--source-langs", "en",
        "--target-langs", "en,zh", "--fact-ids", ",".join(FACTS), "--ig-steps", "2", "--edit-steps", "4",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    single = tmp_path / "single.csv"
    subprocess.run(
        [sys.executable, "-m", "memla_core.bench", *common, "--out", str(single)],
        check=True, env={**env, "MEMLA_CACHE": str(tmp_path / "cache-single")},
        capture_output=True, text=True, timeout=300,
    )
    env["MEMLA_CACHE"] = str(tmp_path / "cache-parallel")  # neurons computed again, inside the shards
    parallel = tmp_path / "parallel.csv"
    launch = [
        # --multi_gpu selects accelerate's torchrun launcher; on CPU the processes join with gloo.
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
        "-m", "memla_core.bench", *common, "--out", str(parallel),
    ]
    done = subprocess.run(launch, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "3 group(s) computed (0 failed), 0 already" in done.stdout and "2 process(es)" in done.stdout
    assert not part_path(parallel, 0).exists() and not part_path(parallel, 1).exists()
    ones, twos = read_results(single), read_results(parallel)
    assert len(ones) == 3 * 2
    pd.testing.assert_frame_equal(_metric_rows(twos), _metric_rows(ones))


def test_methods_compare_script_summarises_runner_rows_by_hand(tiny_models, bundled, tmp_path):
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "methods_compare.py"
    spec = importlib.util.spec_from_file_location("methods_compare", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)

    config = _config(tmp_path / "m.csv", methods=("memla", "ike"), target_languages=("en", "zh", "fr"))
    rows = run_bench(config, lm=tiny_models["gpt2"], dataset=bundled).results
    table = script.summarise(rows, ["memla", "ike"], list(FACTS[:2]))
    assert list(table.index) == ["MEMLA", "IKE"]
    for method, label in (("memla", "MEMLA"), ("ike", "IKE")):
        mine = rows[rows["method"] == method]
        per_target = mine.groupby("target_lang")["ES"].mean()
        assert table.loc[label, "en-en ES"] == pytest.approx(per_target["en"])
        assert table.loc[label, "en-avg ES"] == pytest.approx((per_target["zh"] + per_target["fr"]) / 2)
        groups = mine.drop_duplicates("fact_id")
        assert table.loc[label, "edit_s"] == pytest.approx(groups["seconds_edit"].mean())
        assert table.loc[label, "facts"] == 2 and table.loc[label, "failed"] == 0
    # Facts outside the selection are left out.
    one = script.summarise(rows, ["memla"], [FACTS[0]])
    first = rows[(rows["method"] == "memla") & (rows["fact_id"] == FACTS[0]) & (rows["target_lang"] == "en")]
    assert one.loc["MEMLA", "en-en ES"] == pytest.approx(first["ES"].iloc[0]) and one.loc["MEMLA", "facts"] == 1
    assert "MEMLA (" in script.ranking(table, "en-avg ES")
