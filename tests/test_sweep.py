"""Sweeps (grid parsing and expansion, labels, resume), the dev/test split, known-pair scores,
the Pareto front and the selection rule of docs/tuning.md, on hand-made rows and tiny models."""

from __future__ import annotations

import collections
import random

import pandas as pd
import pytest

from memla_core.bench import BenchConfig, BenchConfigError, canonical_method, resolve_method, run_bench
from memla_core.bench.known import change_table, known_mask
from memla_core.bench.sweep import config_label, configs_per_method, expand, parse_axis, parse_label
from memla_core.bench.tuning import (
    CURRENT_RULE, RULES, SelectionRule, eligible, pareto_front, rule_named, select_configs, sweep_summary,
)
from memla_core.data.splits import select_split, split_assignment

# --------------------------------------------------------------------------- grid and labels


def test_axis_parsing_and_errors():
    axis = parse_axis("MEMLA.neurons.threshold=0.05, 0.1,0.1")
    assert (axis.method, axis.path, axis.values) == ("memla", "neurons.threshold", ("0.05", "0.1"))
    assert parse_axis("memla:wo-lsm.lr=1").method == "memla:w/o LSM"
    for bad in ("memla.lr", "memla=0.1", "memla.lr=", "memla.lr=a[b"):
        with pytest.raises(BenchConfigError):
            parse_axis(bad)
    with pytest.raises(ValueError, match="available"):
        parse_axis("nosuch.lr=1")


def test_grid_expansion_full_and_random():
    axes = [parse_axis("memla.lr=0.001,0.003,0.01"), parse_axis("memla.neurons.threshold=0.1,0.2"),
            parse_axis("ft.lr=1e-4,1e-3")]
    names = expand(axes)
    assert names[0] == "memla" and "ft" in names  # defaults first, one per method
    assert configs_per_method(names) == {"memla": 1 + 6, "ft": 1 + 2}
    assert "memla[lr=0.003,neurons.threshold=0.2]" in names
    sampled = expand(axes, samples=3, seed=7)
    assert configs_per_method(sampled) == {"memla": 4, "ft": 3}  # ft has only 2 points: all of them
    assert sampled == expand(axes, samples=3, seed=7)  # seeded
    assert set(sampled) <= set(names)
    assert any(expand(axes, samples=3, seed=s) != sampled for s in range(1, 6))


def test_a_grid_point_equal_to_the_default_is_not_run_twice():
    axes = [parse_axis("memla.lr=1e-3,0.003"), parse_axis("memla.scale_in_training=true,false"),
            parse_axis("ft.layer=3,12")]
    names = expand(axes)
    # lr 1e-3 with training at scale c is MEMLA's default: only the name "memla" runs it.
    assert configs_per_method(names) == {"memla": 1 + 3, "ft": 1 + 2}  # ft.layer's default is per model: kept
    assert "memla[lr=1e-3,scale_in_training=true]" not in names
    assert configs_per_method(expand(axes, samples=3, seed=0))["memla"] == 4


def test_label_round_trip_and_tuple_values():
    label = config_label("memla", {"neurons.independent_languages": "en,zh", "lr": "0.01"})
    assert label == "memla[lr=0.01,neurons.independent_languages=en+zh]"
    assert parse_label(label) == ("memla", {"lr": "0.01", "neurons.independent_languages": "en,zh"})
    assert canonical_method("MEMLA[lr=0.01]") == "memla[lr=0.01]"
    assert parse_label("memla") == ("memla", {})
    with pytest.raises(BenchConfigError):
        parse_label("memla[lr]")


def test_label_overrides_reach_the_config(tiny_models):
    lm = tiny_models["gpt2"]
    run = resolve_method("memla[lr=0.01,neurons.threshold=0.2,neurons.independent_languages=en+zh]", lm, BenchConfig())
    assert run.config.lr == 0.01
    assert run.config.neurons.threshold == 0.2
    assert run.config.neurons.independent_languages == ("en", "zh")
    with pytest.raises(BenchConfigError, match="nosuch"):
        resolve_method("memla[nosuch=1]", lm, BenchConfig())


# --------------------------------------------------------------------------- split


def test_split_is_deterministic_stratified_and_order_free(bundled):
    facts = list(bundled)
    assignment = split_assignment(facts)
    assert split_assignment(list(reversed(facts))) == assignment
    dev, test = select_split(facts, "dev"), select_split(facts, "test")
    assert {f.example_id for f in dev}.isdisjoint(f.example_id for f in test)
    assert len(dev) + len(test) == len(facts) and abs(len(dev) - len(test)) <= 1
    per_relation = collections.Counter(f.relation for f in facts)
    dev_count = collections.Counter(f.relation for f in dev)
    for relation, n in per_relation.items():
        assert dev_count[relation] in (n // 2, n // 2 + 1)
    shuffled = facts[:]
    random.Random(0).shuffle(shuffled)
    assert {f.example_id for f in select_split(shuffled, "dev")} == {f.example_id for f in dev}
    sample = select_split(facts, "dev", per_relation=1)
    assert len(sample) == len(per_relation) and set(sample) <= set(dev)
    with pytest.raises(ValueError):
        select_split(facts, "train")


# --------------------------------------------------------------------------- known pairs, summary, rule


def _row(config, fact, target, es, ns, p_true_before, p_new_before, ns_before=0.0, error="", health="ok", source="en"):
    return {
        "fact_id": fact, "method": config, "source_lang": source, "target_lang": target, "ES": es, "PS": es,
        "NS": ns, "QS": 0.0, "NS_before": ns_before, "ES_before": 0.0, "p_true_before": p_true_before,
        "p_new_before": p_new_before, "error": error, "health": health, "seconds_edit": 2.0,
    }


def test_known_pairs_and_ns_change():
    rows = pd.DataFrame([
        _row("memla", "f1", "en", 100, 50, 0.5, 0.1),
        _row("memla", "f1", "fr", 100, 20, 0.1, 0.5, ns_before=40),  # already preferred new: not known
        _row("memla", "f1", "de", 0, 30, 0.3, 0.2, ns_before=10),
        _row("memla", "f2", "fr", 100, 40, 0.3, 0.2, ns_before=40),
    ])
    assert known_mask(rows).tolist() == [True, False, True, True]
    avg = change_table(rows).set_index(["method", "target_lang"]).loc[("memla", "avg")]
    assert avg["pairs"] == 3 and avg["n_known"] == 2
    assert avg["ES"] == pytest.approx(200 / 3)
    assert avg["ES_known"] == pytest.approx(50.0)  # de 0, f2-fr 100
    assert avg["NS_change"] == pytest.approx(((20 - 40) + (30 - 10) + (40 - 40)) / 3)


def _summary_rows(config, es_known, ns, en_es=100, failed=False):
    rows = [_row(config, "f1", "en", en_es, 50, 0.5, 0.1, error="boom" if failed else "")]
    rows += [_row(config, "f1", t, es_known, ns, 0.5, 0.1) for t in ("fr", "de")]
    return rows


def test_configurations_are_compared_on_the_same_facts():
    rows = pd.DataFrame(
        _summary_rows("memla", 50, 30)
        + [_row("memla", "f2", t, 0, 0, 0.5, 0.1) for t in ("en", "fr")]  # f2: only the default has it
        + _summary_rows("memla[lr=0.01]", 80, 29)
    )
    summary = sweep_summary(rows)
    assert summary["facts"].tolist() == [1, 1]
    assert summary.set_index("config").loc["memla", "avg_ES_known"] == 50
    assert sweep_summary(rows, same_facts=False).set_index("config").loc["memla", "facts"] == 2


def test_pareto_front_on_hand_made_table():
    table = pd.DataFrame({"avg_ES_known": [50, 60, 60, 40, 70, float("nan")], "avg_NS": [30, 20, 25, 40, 10, 99]})
    assert pareto_front(table).tolist() == [True, False, True, True, True, False]


def test_selection_rule_dev_v1():
    rows = pd.DataFrame(
        _summary_rows("memla", 50, 30)
        + _summary_rows("memla[lr=0.01]", 80, 29)  # best ES within the NS tolerance: chosen
        + _summary_rows("memla[lr=0.1]", 100, 20)  # NS too low
        + _summary_rows("memla[lr=1]", 100, 30, en_es=0)  # source ES too low
        + _summary_rows("ft", 60, 10)
        + _summary_rows("ft[lr=1]", 90, 40, failed=True)  # a failed edit disqualifies
    )
    summary = sweep_summary(rows)
    assert summary.set_index("config").loc["memla[lr=0.01]", "avg_ES_known"] == 80
    dev_v1 = RULES["dev-v1"]  # the test's name: not the current rule's default
    assert eligible(summary, dev_v1).tolist() == [True, True, False, False, True, False]
    assert select_configs(summary, dev_v1) == {"memla": "memla[lr=0.01]", "ft": "ft"}
    strict = SelectionRule(ns_tolerance=0.5)
    assert select_configs(summary, strict)["memla"] == "memla"


def test_rule_versions_differ_only_in_the_degenerate_bound():
    """dev-v1 rejects one flagged edit in 12 facts (8.3% > 5%), dev-v2 accepts it (≤ 10%) but not two."""
    def summary_row(config, degenerate, es_known):
        return {"config": config, "method": "memla", "facts": 12, "failed": 0, "degenerate": degenerate,
                "en_en_ES": 100.0, "avg_ES_known": es_known, "avg_NS": 20.0}

    summary = pd.DataFrame([summary_row("memla", 0, 50), summary_row("memla[a]", 1, 70), summary_row("memla[b]", 2, 90)])
    assert eligible(summary, RULES["dev-v1"]).tolist() == [True, False, False]
    assert eligible(summary, RULES["dev-v2"]).tolist() == [True, True, False]
    assert select_configs(summary, RULES["dev-v1"]) == {"memla": "memla"}
    assert select_configs(summary, rule_named("dev-v2")) == {"memla": "memla[a]"}
    assert CURRENT_RULE is RULES["dev-v2"]
    with pytest.raises(ValueError, match="dev-v1, dev-v2"):
        rule_named("dev-v3")


# --------------------------------------------------------------------------- end to end on a tiny model


def test_sweep_runs_resumes_and_shares_unedited_scores(tiny_models, bundled, tmp_path, monkeypatch):
    from memla_core.bench import runner

    lm = tiny_models["llama"]
    calls = []
    real = runner.unedited_scores
    monkeypatch.setattr(runner, "unedited_scores", lambda *a: calls.append(a[1].example_id) or real(*a))
    names = expand([parse_axis("memla.neurons.threshold=0.2,0.5"), parse_axis("ft.lr=0.001")])
    config = BenchConfig(
        methods=names, fact_ids=("geo-capital-france", "geo-capital-japan"), target_languages=("en", "fr"),
        common_overrides={"neurons.steps": 2, "edit_steps": 3}, out=tmp_path / "sweep.csv",
    )
    first = run_bench(config, lm=lm, dataset=bundled)
    assert first.computed == 2 * len(names)
    assert calls == ["geo-capital-france", "geo-capital-japan"]  # once per fact, not per config
    rows = first.results
    assert set(rows["method"]) == set(names)
    assert rows[["ES_before", "p_true_before", "p_new_before"]].notna().all().all()
    # the unedited scores are the same for every configuration of a fact
    assert rows.groupby(["fact_id", "target_lang"])["p_true_before"].nunique().max() == 1
    again = run_bench(config, lm=lm, dataset=bundled)
    assert again.computed == 0 and again.skipped == 2 * len(names)
    summary = sweep_summary(again.results)
    assert list(summary["config"]) == list(names)


def test_presets_report_pairs_each_method_with_its_tuned_preset():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "presets_report.py"
    spec = importlib.util.spec_from_file_location("presets_report", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    paper = pd.DataFrame(_summary_rows("memla", 50, 30) + _summary_rows("ft", 40, 20))
    tuned = pd.DataFrame(_summary_rows("memla", 75, 28))  # FT-L has no tuned values: its paper row stands
    table = module.report(paper, tuned, "en")
    assert table[["method", "preset"]].values.tolist() == [
        ["MEMLA", "paper"], ["MEMLA", "tuned"], ["FT-L", "paper = tuned"],
    ]
    assert table["en-avg ES known"].tolist() == [50, 75, 40]
    assert table["en-avg NS"].tolist() == [30, 28, 20]
    assert "| MEMLA | tuned | 1 |" in module.markdown(table)


def test_each_method_is_summarised_on_the_facts_all_its_own_configurations_finished():
    rows = pd.DataFrame(
        _summary_rows("memla", 50, 30) + [_row("memla", "f2", t, 100, 30, 0.5, 0.1) for t in ("en", "fr")]
        + _summary_rows("memla[lr=0.01]", 80, 29) + [_row("memla[lr=0.01]", "f2", t, 0, 30, 0.5, 0.1) for t in ("en", "fr")]
        + _summary_rows("ft", 40, 20)  # FT-L has only f1: it must not shrink MEMLA's sample
    )
    summary = sweep_summary(rows).set_index("config")
    assert summary.loc["memla", "facts"] == 2 and summary.loc["ft", "facts"] == 1
    assert summary.loc["memla", "avg_ES_known"] == pytest.approx(200 / 3)  # f1 fr, de 50; f2 fr 100
