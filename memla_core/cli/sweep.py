"""``memla sweep``: a grid or seeded random search over method config fields, as one benchmark.

Every configuration is a benchmark "method" named by its overrides (``memla[lr=0.003]``), so the
results file, resume, sharding under ``accelerate launch`` and cached attributions are those of
``memla bench``. Prints per configuration the en-en and en-avg scores (raw and on known pairs),
seconds per edit, the Pareto front over (en-avg ES on known pairs, en-avg NS) and the choice of
the selection rule in docs/tuning.md.
"""

from __future__ import annotations

import argparse
import os
import sys

import pandas as pd

from ..bench import run_bench
from ..bench.store import read_all
from ..bench.sweep import configs_per_method, expand, parse_axis
from ..bench.tuning import CURRENT_RULE, RULES, eligible, rule_named, pareto_front, select_configs, sweep_summary
from ..bench.summaries import format_table
from ..bounds import check_results_path
from .bench import add_bench_args, bench_config, method_names
from .common import load_dataset_arg


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "sweep", help="grid or random search over config fields; summary, Pareto front, selection",
        description="Run many configurations of one or more methods over a fact split (resumable, like "
        "memla bench) and print per-configuration scores, the ES-NS Pareto front and the rule's choice.",
    )
    add_bench_args(parser, methods_default="")
    parser.add_argument(
        "--grid", action="append", default=[], metavar="METHOD.FIELD=V1,V2",
        help="one swept field (repeatable): memla.neurons.threshold=0.05,0.1,0.2 memla.lr=0.001,0.003; "
        "tuple values join items with '+' (en+zh+fr); the full grid of each method's fields is run",
    )
    parser.add_argument("--random", type=int, metavar="N",
                        help="instead of the full grid, N distinct grid points per method (seeded by --sweep-seed)")
    parser.add_argument("--sweep-seed", type=int, default=0, help="seed of the random search (default 0)")
    parser.add_argument("--summary-source", default="en", help="source language the summary is computed for")
    parser.add_argument("--rule", default=CURRENT_RULE.name, choices=list(RULES),
                        help=f"selection rule of docs/tuning.md applied to the summary (default {CURRENT_RULE.name})")
    parser.add_argument("--report-only", action="store_true",
                        help="compute nothing: print the summary, Pareto front and choice of the rows already in --out "
                        "(e.g. after stopping a sweep)")
    parser.set_defaults(run=run)


def sweep_config(args: argparse.Namespace):
    axes = [parse_axis(text) for text in args.grid]
    extra = method_names(args.methods, args.ablations) if args.methods.strip() or args.ablations.strip() else ()
    if not axes and not extra:
        raise ValueError("memla sweep needs at least one --grid METHOD.FIELD=V1,V2 (or --methods).")
    if args.preset != "paper":
        raise ValueError("memla sweep starts every configuration from the paper preset (so that its name says all it "
                         "changes); drop --preset, or put the tuned values in --grid.")
    return bench_config(args, methods=expand(axes, extra, samples=args.random, seed=args.sweep_seed))


def _group_bar(config):
    from tqdm.auto import tqdm

    per_fact = len(config.methods) * len(config.source_languages)
    bar = tqdm(desc="edits", unit="edit", file=sys.stderr, disable=os.environ.get("RANK", "0") != "0")

    def progress(done: int, total: int, label: str) -> None:
        bar.total = total * per_fact
        bar.set_postfix_str(label[:40])
        bar.refresh()

    def after_group(_key, _rows) -> None:
        bar.update(1)

    return bar, progress, after_group


def run(args: argparse.Namespace) -> int:
    config = sweep_config(args)
    if args.report_only:
        if not config.out.exists():
            raise ValueError(f"{config.out} does not exist: run the sweep first (without --report-only).")
        results = read_all(config.out)
        print_sweep(results[results["method"].isin(config.methods)], args.summary_source, config.out, args.rule)
        return 0
    check_results_path(config.out)
    dataset = load_dataset_arg(config.dataset, args.strict)
    counts = configs_per_method(config.methods)
    print(f"sweep: {len(config.methods)} configuration(s) ({', '.join(f'{m} {n}' for m, n in counts.items())}), "
          f"split {config.split}{f' ({config.per_relation} per relation)' if config.per_relation else ''} → {config.out}",
          file=sys.stderr)
    bar, progress, after_group = _group_bar(config)
    try:
        outcome = run_bench(config, dataset=dataset, progress=progress, after_group=after_group)
    finally:
        bar.close()
    if not outcome.is_main:
        return 0
    results = outcome.results[outcome.results["method"].isin(config.methods)]
    print_sweep(results, args.summary_source, config.out, args.rule)
    print(f"\n{outcome.computed} edit group(s) computed ({outcome.failed} failed), {outcome.skipped} already in {config.out}.")
    return 0


def print_sweep(results: pd.DataFrame, source: str, out, rule_name: str = CURRENT_RULE.name) -> pd.DataFrame:
    summary = sweep_summary(results, source)
    if summary.empty:
        print(f"No rows with source language {source}.")
        return summary
    rule = rule_named(rule_name)
    summary["pareto"] = pareto_front(summary)
    summary["eligible"] = eligible(summary, rule)
    chosen = select_configs(summary, rule)
    summary["chosen"] = summary["config"].isin(set(chosen.values()))
    with pd.option_context("display.width", 250, "display.max_columns", 30, "display.max_colwidth", 70):
        print(f"\nPer configuration, edits written in {source} ({source}-avg pools the cross-lingual pairs; "
              "*_known: pairs the unedited model knew):")
        print(format_table(summary.round(2)))
    print(f"\nPareto front over ({source}-avg ES on known pairs, {source}-avg NS):")
    for row in summary[summary["pareto"]].itertuples():
        print(f"  {row.config}: ES_known {row.avg_ES_known:.1f}, NS {row.avg_NS:.1f}")
    print(f"\nSelection rule {rule.name} (docs/tuning.md):")
    for method, config in chosen.items():
        print(f"  {method}: {config}{'  (the default)' if config == method else ''}")
    path = out.with_name(out.stem + ".sweep.csv")
    summary.to_csv(path, index=False)
    print(f"summary: {path}")
    return summary


def summarise_file(path, source: str = "en") -> pd.DataFrame:
    """The summary of an existing sweep results file (no model needed)."""
    return print_sweep(read_all(path), source, path)
