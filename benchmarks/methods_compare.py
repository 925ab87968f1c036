"""MEMLA against the baselines on the bundled facts: edit in English, evaluate in all 12 languages.

    MEMLA_CACHE=/tmp/memla-cache python benchmarks/methods_compare.py --limit 20 --out methods.csv

For every method (``--methods``, default memla, ft, rome, memit, pmet, ike) and each of the
first ``--limit`` bundled facts, the benchmark runner (``memla bench``) computes the edit from
the unedited default model, applies it, evaluates ES/PS/NS in every language of the fact and
reverts. The rows go to ``--out`` as they come, so an interrupted run resumes, and a results
file of a larger ``memla bench`` run with the same settings is reused as it is (e.g. ``--out``
of ``memla bench --methods memla,ft,rome,memit,pmet,ike --limit 30``: its first 20 facts).

Prints, per method, the en-en and en-avg (mean over the other 11 languages) ES/PS/NS in
percent, as the paper's Table 3 computes them (``bench.summaries.main_table``), and seconds per
edit: ``edit_s`` (computing the edit), ``neurons_s`` (MEMLA's knowledge-neuron search, cached on
disk, so 0 when the neurons were already there) and ``eval_s`` (12 languages). Baselines use
their per-architecture defaults (``default_config``). Failed edits are counted and left out.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pandas as pd
import torch

from memla_core.bench import BenchConfig, main_table, run_bench, select_facts
from memla_core.bench.runner import load_dataset
from memla_core.bench.summaries import method_label
from memla_core.editing import METHODS

SOURCE = "en"
METRICS = ("ES", "PS", "NS")


def summarise(results: pd.DataFrame, methods: list[str], facts: list[str]) -> pd.DataFrame:
    """One row per method: Table 3's en-en and en-avg cells, seconds per edit, facts and failures."""
    rows = results[results["fact_id"].isin(facts) & results["method"].isin(methods) & (results["source_lang"] == SOURCE)]
    main = main_table(rows, METRICS)
    cells = main[main["target_lang"].isin([SOURCE, "avg"])]
    wide = cells.pivot_table(index="method", columns=["target_lang", "metric"], values="value")
    table = pd.DataFrame(index=[method_label(m) for m in methods])
    for target in (SOURCE, "avg"):
        for metric in METRICS:
            column = (target, metric)
            table[f"en-{target} {metric}"] = wide[column] if column in wide.columns else float("nan")
    groups = rows.drop_duplicates(subset=["fact_id", "method", "source_lang"]).copy()
    groups["failed"] = groups["error"].fillna("") != ""
    groups["label"] = groups["method"].map(method_label)
    ok = groups[~groups["failed"]].groupby("label")
    table["edit_s"] = ok["seconds_edit"].mean()
    table["neurons_s"] = ok["seconds_neurons"].mean()
    table["eval_s"] = ok["seconds_eval"].mean()
    table["facts"] = ok.size()
    table["failed"] = groups.groupby("label")["failed"].sum()
    return table


def ranking(table: pd.DataFrame, column: str) -> str:
    ordered = table[column].dropna().sort_values(ascending=False)
    return " > ".join(f"{name} ({value:.1f})" for name, value in ordered.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=20, help="first N bundled facts (default 20)")
    parser.add_argument("--methods", default="memla,ft,rome,memit,pmet,ike", help="comma-separated method names")
    parser.add_argument("--out", type=Path, default=Path("methods_compare.csv"),
                        help="results CSV: resumed, and reused from a memla bench run with the same settings")
    parser.add_argument("--threads", type=int, help="torch CPU threads (1 is fastest on a busy machine)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown method(s) {unknown}; available: {', '.join(METHODS)}")
    config = BenchConfig(methods=tuple(methods), source_languages=(SOURCE,), limit=args.limit, out=args.out)
    outcome = run_bench(config)
    facts = [f.example_id for f in select_facts(load_dataset(config.dataset), config)]
    table = summarise(outcome.results, methods, facts)
    print(f"{len(facts)} facts, source {SOURCE}, {outcome.computed} edit(s) computed now, {outcome.skipped} reused from {args.out}")
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.to_string(float_format=lambda x: f"{x:.1f}"))
    print(f"\ncross-lingual ES (en-avg): {ranking(table, 'en-avg ES')}")
    print(f"same-language ES (en-en):  {ranking(table, 'en-en ES')}")


if __name__ == "__main__":
    main()
