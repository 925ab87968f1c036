"""``memla bench``: run editing methods over MKEB facts and print the paper-shaped tables.

Runs alone or as several processes under ``accelerate launch`` (docs/benchmarks.md); results are
appended to ``--out`` as they come, and a second invocation resumes where the first stopped.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pandas as pd

from ..bench import BenchConfig, ablation_methods, load_paper_tables, run_bench
from ..bench.config import canonical_method, speed_overrides
from ..bench.known import change_table
from ..bench.series import ABILITY_ITEMS, ABILITY_SENTENCES, SeriesConfig, check_batchable, run_series
from ..bench.series_summaries import (
    curve_table,
    curve_table_wide,
    series_summary,
    series_summary_paths,
    series_summary_wide,
)
from ..bench.summaries import (
    ablation_table,
    ablation_table_wide,
    compare_with_paper,
    coverage,
    format_table,
    main_table,
    main_table_wide,
    multihop_table,
    multihop_table_wide,
    run_totals,
    write_summaries,
)
from ..editing.memla import ABLATIONS
from ..editing.registry import METHODS
from ..models import ModelSpec
from ..bounds import check_results_path
from .common import add_dataset_args, add_model_args, load_dataset_arg


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "bench", help="benchmark editing methods over facts and languages (paper Tables 3-6)",
        description="Edit every selected fact with every method in every source language, evaluate in "
        "every target language, and print the paper-shaped summary. Resumes from --out.",
    )
    add_bench_args(parser)
    add_series_args(parser)
    parser.set_defaults(run=run)


def add_series_args(parser: argparse.ArgumentParser) -> None:
    """Many edits at once or in a row (docs/batch_and_sequential.md); without them, single edits."""
    many = parser.add_argument_group("many edits (instead of one edit at a time)")
    many.add_argument("--batch-size", type=int, metavar="K",
                      help="edit the facts in batches of K at once (methods that batch: "
                      + ", ".join(s.title for s in METHODS.values() if s.batchable) + ")")
    many.add_argument("--sequential", type=int, metavar="N",
                      help="push the first N facts' edits one after another without reverting (every method)")
    many.add_argument("--eval-every", type=int, default=1, metavar="E",
                      help="with --sequential: score every E edits and after the last (default 1)")
    many.add_argument("--ability-items", default=str(ABILITY_ITEMS),
                      help=f"probe items per task and language of each model state, or 'all' (default {ABILITY_ITEMS})")
    many.add_argument("--ability-sentences", default=str(ABILITY_SENTENCES),
                      help=f"drift sentences per language, or 'all' (default {ABILITY_SENTENCES})")


def series_config(args: argparse.Namespace) -> SeriesConfig | None:
    """The sequential or batch run the arguments ask for (None: single edits)."""
    if args.batch_size is not None and args.sequential is not None:
        raise ValueError("--batch-size and --sequential are two kinds of run; give one of them.")
    if args.batch_size is None and args.sequential is None:
        return None
    counts = {name: None if value.strip().lower() == "all" else int(value)
              for name, value in (("ability_items", args.ability_items), ("ability_sentences", args.ability_sentences))}
    if args.sequential is not None:
        return SeriesConfig("sequential", args.sequential, args.eval_every, **counts)
    return SeriesConfig("batch", args.batch_size, **counts)


def add_bench_args(parser: argparse.ArgumentParser, methods_default: str = "memla") -> None:
    """The options ``memla bench`` and ``memla sweep`` share."""
    add_model_args(parser)
    add_dataset_args(parser)
    parser.add_argument(
        "--methods", default=methods_default,
        help=f"comma-separated: {', '.join(METHODS)}; MEMLA variants as memla:wo-lsm, memla:wo-lse, "
        "memla:wo-lim, memla:wo-lie (paper Table 5)",
    )
    parser.add_argument(
        "--ablations", default="",
        help="'all' adds every Table 5 variant of MEMLA; or a comma list such as 'wo-lsm,wo-lie'",
    )
    parser.add_argument("--source-langs", default="en", help="edit languages, comma-separated (default en)")
    parser.add_argument("--target-langs", default="all", help="evaluation languages, or 'all' of each fact")
    parser.add_argument("--preset", choices=["paper", "tuned"], default="paper",
                        help="defaults every method starts from (default paper; 'tuned': editing/presets.py)")
    parser.add_argument("--split", choices=["dev", "test", "all"], default="all",
                        help="facts of the dev or test split (docs/tuning.md; default all)")
    parser.add_argument("--per-relation", type=int, help="only the first k facts of each relation of the split")
    parser.add_argument("--limit", type=int, help="at most this many facts")
    parser.add_argument("--fact-ids", default="", help="only these facts (comma-separated ids, see `memla facts`)")
    parser.add_argument("--seed", type=int, default=0, help="seed for every edit (default 0)")
    parser.add_argument("--out", type=Path, default=Path("results.csv"), help="results CSV (default results.csv)")
    parser.add_argument("--parquet", action="store_true", help="also write the results as .parquet")
    parser.add_argument("--overwrite", action="store_true", help="discard rows in --out instead of resuming")
    parser.add_argument(
        "--known-only", action="store_true",
        help="skip (fact, source) pairs the unedited model does not know in the source language (`memla facts --known`)",
    )
    speed = parser.add_argument_group("speed (applied to every method that has the setting)")
    speed.add_argument("--ig-steps", type=int, help="integrated-gradients steps m for knowledge neurons (default 20)")
    speed.add_argument("--ig-baseline", choices=["eos", "zero"], help="integrated-gradients baseline (default eos)")
    speed.add_argument("--threshold", type=float, help="adaptive neuron threshold (default 0.3)")
    speed.add_argument("--independent-langs", help="languages intersected for language-independent neurons")
    speed.add_argument(
        "--edit-steps", type=int,
        help="optimisation steps of each edit, in each method's own step field (" + ", ".join(
            f"{s.title} {s.step_field}" for s in METHODS.values() if s.step_field) + "); also '*.edit_steps=N' in --set",
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="METHOD.FIELD=VALUE",
        help="override one config field (repeatable): memla.lr=0.01, memla.neurons.threshold=0.2, "
        "'memla:wo-lsm.coefficient=1'; '*.FIELD=VALUE' for every method that has FIELD",
    )
    parser.add_argument(
        "--barrier-timeout", type=float, default=24 * 3600.0,
        help="seconds processes wait for the slowest shard under accelerate launch (default 1 day)",
    )


def _split(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def method_names(methods: str, ablations: str) -> tuple[str, ...]:
    names = [canonical_method(m) for m in _split(methods)]
    if ablations.strip().lower() == "all":
        extra = list(ablation_methods("memla"))
    else:
        extra = [canonical_method(f"memla:{v}") for v in _split(ablations)]
    return tuple(dict.fromkeys(names + extra))


def parse_sets(items: list[str]) -> dict[str, dict[str, str]]:
    """``METHOD.FIELD=VALUE`` -> {method: {field: value}}; values are coerced later, per field type."""
    overrides: dict[str, dict[str, str]] = {}
    for item in items:
        target, sep, value = item.partition("=")
        method, dot, path = target.partition(".")
        if not sep or not dot or not path:
            raise ValueError(
                f"--set {item}: expected METHOD.FIELD=VALUE, e.g. memla.lr=0.01 or '*.seed=1'."
            )
        key = "*" if method.strip() == "*" else canonical_method(method)
        overrides.setdefault(key, {})[path.strip()] = value
    return overrides


def bench_config(args: argparse.Namespace, methods: tuple[str, ...] | None = None) -> BenchConfig:
    """The run the arguments describe; ``methods`` replaces ``--methods`` (``memla sweep``)."""
    independent = None if args.independent_langs is None else tuple(_split(args.independent_langs))
    common = speed_overrides(args.ig_steps, args.ig_baseline, args.threshold, independent, args.edit_steps)
    targets = None if args.target_langs.strip().lower() == "all" else tuple(_split(args.target_langs))
    return BenchConfig(
        model=ModelSpec(args.model, device=args.device, dtype=args.dtype, trust_remote_code=args.trust_remote_code,
                        allow_download=args.allow_download),
        dataset=args.dataset,
        methods=method_names(args.methods, args.ablations) if methods is None else methods,
        source_languages=tuple(_split(args.source_langs)),
        target_languages=targets,
        fact_ids=tuple(_split(args.fact_ids)),
        split=args.split,
        preset=args.preset,
        per_relation=args.per_relation,
        limit=args.limit,
        seed=args.seed,
        common_overrides=common,
        method_overrides=parse_sets(args.set),
        out=args.out,
        parquet=args.parquet,
        overwrite=args.overwrite,
        known_only=args.known_only,
        barrier_timeout_s=args.barrier_timeout,
    )


def _fact_bar(unit: str = "facts"):
    from tqdm.auto import tqdm

    # Under accelerate launch only the main process draws (it reports its own shard).
    bar = tqdm(desc=unit, unit=unit.rstrip("s"), file=sys.stderr, disable=os.environ.get("RANK", "0") != "0")

    def progress(done: int, total: int, label: str) -> None:
        bar.total = total
        bar.n = done
        bar.set_postfix_str(label[:50])
        bar.refresh()

    return bar, progress


def run(args: argparse.Namespace) -> int:
    config = bench_config(args)
    check_results_path(config.out)
    series = series_config(args)
    if series is not None:
        return run_many(config, series, args)
    dataset = load_dataset_arg(config.dataset, args.strict)
    bar, progress = _fact_bar()
    try:
        outcome = run_bench(config, dataset=dataset, progress=progress)
    finally:
        bar.close()
    if not outcome.is_main:
        return 0  # the main process prints the merged summary
    print_summary(outcome.results, config)
    print(
        f"\n{outcome.computed} group(s) computed ({outcome.failed} failed), {outcome.skipped} already in "
        f"{config.out}; {outcome.process_count} process(es)."
    )
    degenerate = run_totals(outcome.results)["degenerate"] if not outcome.results.empty else 0
    if degenerate:
        print(f"memla: warning: {degenerate} edit(s) are degenerate (column health): their scores are not to be trusted.",
              file=sys.stderr)
    return 0


def run_many(config: BenchConfig, series: SeriesConfig, args: argparse.Namespace) -> int:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("--sequential and --batch-size run in one process; start them without accelerate launch.")
    if series.kind == "batch":
        check_batchable(config.methods)  # before the model loads
    dataset = load_dataset_arg(config.dataset, args.strict)
    bar, progress = _fact_bar("steps")
    try:
        outcome = run_series(config, series, dataset=dataset, progress=progress)
    finally:
        bar.close()
    print_series_summary(outcome.results, config)
    print(f"\n{outcome.computed} step(s) computed ({outcome.failed} failed edit(s)), {outcome.skipped} already in "
          f"{config.out}.")
    return 0


def print_series_summary(results: pd.DataFrame, config: BenchConfig) -> None:
    """The curves at the edit language and across languages, then the summary after the last edit."""
    curve = curve_table(results)
    summary = series_summary(curve)
    with pd.option_context("display.width", 250, "display.max_columns", 40):
        for source in dict.fromkeys(curve["source_lang"]):
            for target, what in ((source, f"in {source}"), ("avg", f"averaged over the targets other than {source}")):
                wide = curve_table_wide(curve[curve["source_lang"] == source], target)
                if not wide.empty:
                    print(f"\nCurves, edits written in {source}, scored {what} (docs/batch_and_sequential.md):")
                    print(format_table(wide))
            wide = series_summary_wide(summary, source)
            if not wide.empty:
                print(f"\nAfter the last edit, edits written in {source} (shape of paper Tables 3-4):")
                print(format_table(wide))
    paths = series_summary_paths(config.out)
    curve.to_csv(paths["curve"], index=False, float_format="%.4g")
    summary.to_csv(paths["summary"], index=False, float_format="%.4g")
    print(f"\nrows: {config.out}")
    for path in paths.values():
        print(f"summary: {path}")


def known_summary(results: pd.DataFrame) -> pd.DataFrame:
    """Per method and source: the source-language cell and the pooled cross-lingual average of
    ``known.change_table`` (empty for results files written before the ``*_before`` columns)."""
    if "p_true_before" not in results or results["p_true_before"].isna().all():
        return pd.DataFrame()
    table = change_table(results)
    keep = (table["target_lang"] == table["source_lang"]) | (table["target_lang"] == "avg")
    columns = ["method", "source_lang", "target_lang", "pairs", "n_known", "ES", "ES_known", "PS_known",
               "NS_before", "NS", "NS_change"]
    return table.loc[keep, columns].round(2).reset_index(drop=True)


def print_summary(results: pd.DataFrame, config: BenchConfig) -> None:
    paper = load_paper_tables()
    main = main_table(results)
    with pd.option_context("display.width", 250, "display.max_columns", 40):
        for source in dict.fromkeys(main["source_lang"]):
            print(f"\nES / PS / NS, edits written in {source} (shape of paper Table {'3' if source == 'en' else '4' if source == 'zh' else '3/4'}):")
            print(format_table(main_table_wide(main, source)))
        ablation = ablation_table_wide(ablation_table(results))
        if not ablation.empty:
            print(f"\nAblations (shape of paper Table 5; variants: {', '.join(ABLATIONS)}):")
            print(format_table(ablation))
        multihop = multihop_table_wide(multihop_table(results))
        if not multihop.empty:
            print("\nQS on multi-hop questions (shape of paper Table 6):")
            print(format_table(multihop))
        known = known_summary(results)
        if not known.empty:
            print("\nWhat the edits changed (docs/benchmarks.md, 'Known pairs'): raw ES next to ES on the pairs the "
                  "unedited model knew (n_known of pairs), and NS after − before; avg pools the cross-lingual pairs:")
            print(format_table(known))
        print("\nCoverage (facts, failed and degenerate edits, seconds: neurons total, edit and evaluation per fact):")
        print(format_table(coverage(results)))
        comparison = compare_with_paper(results, paper)
        headline = comparison[
            comparison["paper"].notna()
            & ((comparison["target_lang"] == comparison["source_lang"]) | (comparison["target_lang"] == "avg"))
        ]
        if not headline.empty:
            print("\nAgainst the paper (mGPT 1.3B, full MKEB); difference = ours - paper, in points:")
            print(format_table(headline))
    written = write_summaries(results, config.out, paper)
    print(f"\nrows: {config.out}")
    for path in written.values():
        print(f"summary: {path}")
