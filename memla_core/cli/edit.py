"""``memla edit``: edit one fact, evaluate before and after in the requested languages."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path

import pandas as pd

from ..editing import ABLATIONS, EditRequest, MemlaConfig, method_spec
from ..editing.registry import METHODS, config_fields
from ..evaluation import METRICS, evaluate
from ..neurons import find_neurons
from .common import add_dataset_args, add_model_args, load_dataset_arg, load_model_arg, parse_languages
from .neurons import add_neuron_args, neuron_config
from .progress import step_bar


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("edit", help="edit one fact and evaluate it across languages")
    add_model_args(parser)
    add_dataset_args(parser)
    parser.add_argument("--fact", required=True, help="fact id (see `memla facts`)")
    parser.add_argument("--source-lang", default="en", help="language the edit is written in")
    parser.add_argument("--langs", default="all", help="target languages, comma-separated, or 'all'")
    parser.add_argument("--method", default="memla", help=f"editing method: {', '.join(METHODS)}")
    parser.add_argument(
        "--set", action="append", default=[], metavar="FIELD=VALUE",
        help="override a field of the method's config (repeatable), e.g. --set lr=0.01",
    )
    memla = parser.add_argument_group("MEMLA (method.md §2)")
    defaults = MemlaConfig()
    memla.add_argument("--rank-multiplier", type=int, default=defaults.rank_multiplier, help="n (default 1)")
    memla.add_argument("--lr", type=float, default=defaults.lr)
    memla.add_argument("--max-steps", type=int, default=defaults.max_steps)
    memla.add_argument("--coefficient", type=float, default=defaults.coefficient, help="c (default 0.5)")
    memla.add_argument("--ablation", choices=ABLATIONS, default="MEMLA", help="paper Table 5 variant")
    add_neuron_args(parser)
    parser.add_argument("--out", type=Path, help="write results: .json (everything) or .csv (the table)")
    parser.set_defaults(run=run)


def _coerce(value: str, current):
    if isinstance(current, bool):
        return value.lower() in ("1", "true", "yes", "on")
    if isinstance(current, int):
        return int(value)
    if isinstance(current, float):
        return float(value)
    if isinstance(current, tuple):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    return value


def method_config(args: argparse.Namespace, lm):
    spec = method_spec(args.method)
    if spec.name == "memla":
        config = MemlaConfig.ablation(
            args.ablation, rank_multiplier=args.rank_multiplier, lr=args.lr, max_steps=args.max_steps,
            coefficient=args.coefficient, neurons=neuron_config(args),
        )
    else:
        from ..editing import hparams

        config = hparams.default_config(spec.name, lm)
    overrides = {}
    allowed = config_fields(type(config))
    for item in args.set:
        field, sep, value = item.partition("=")
        if not sep or field not in allowed:
            raise ValueError(f"--set {item}: expected FIELD=VALUE with FIELD one of {', '.join(allowed)}.")
        overrides[field] = _coerce(value, getattr(config, field))
    return dataclasses.replace(config, **overrides) if overrides else config


def run(args: argparse.Namespace) -> int:
    dataset = load_dataset_arg(args.dataset)
    fact = dataset.get(args.fact)
    fact.in_language(args.source_lang)
    languages = parse_languages(args.langs, fact)
    spec = method_spec(args.method)  # every argument is checked before the model loads
    lm = load_model_arg(args)
    config = method_config(args, lm)
    if spec.name == "memla":
        with step_bar("knowledge neurons (integrated gradients)", unit="prompt") as progress:
            neurons = find_neurons(
                lm, fact, args.source_lang, config.neurons, cache=False if args.no_cache else None, progress=progress
            )
        editor = spec.editor_cls(config, neurons=neurons)
    else:
        editor = spec.editor_cls(config)
    before = evaluate(lm, fact, languages, source_language=args.source_lang)
    with step_bar(f"{spec.title} edit", unit="step") as progress:
        edit = editor.compute(
            lm, EditRequest(fact, args.source_lang),
            on_step=lambda r: progress(int(r["step"]) + 1, getattr(config, "max_steps", 0) or int(r["step"]) + 1,
                                       f"loss {r['loss']:.3f} P(new) {r['p_new']:.2f}"),
        )
    with edit.applied(lm):
        after = evaluate(lm, fact, languages, edit=edit)
    table = comparison_table(before.summary, after.summary)
    print(f"{spec.title} edit of {fact.label}, written in {args.source_lang}; "
          f"{len(edit.trace)} steps, {edit.seconds:.1f} s")
    shown = table.drop(columns=[f"{m}_before" for m in METRICS])
    formats = {c: (lambda v: f"{v:.3g}") for c in shown.columns if c.startswith("P(")}
    formats.update({m: (lambda v: f"{v:.1f}") for m in METRICS})
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_colwidth", 24):
        print(shown.to_string(index=False, formatters=formats))
    avg = after.transferability()
    print(f"{args.source_lang}-avg: " + "  ".join(f"{m} {avg[m]:.1f}" for m in METRICS if not math.isnan(avg[m])))
    if args.out:
        write_results(args.out, table, before, after, edit, config)
        print(f"wrote {args.out}")
    return 0


def comparison_table(before: pd.DataFrame, after: pd.DataFrame) -> pd.DataFrame:
    """One row per target language: answers and P(new)/P(true) before → after, metrics after."""
    merged = after.merge(before, on=["source_lang", "target_lang"], suffixes=("", "_before"))
    return pd.DataFrame(
        {
            "lang": merged["target_lang"],
            "answer_before": merged["answer_before"],
            "answer_after": merged["answer"],
            "P(new)_before": merged["p_new_before"],
            "P(new)_after": merged["p_new"],
            "P(true)_before": merged["p_true_before"],
            "P(true)_after": merged["p_true"],
            **{m: merged[m] for m in METRICS},
            **{f"{m}_before": merged[f"{m}_before"] for m in METRICS},
            "es_definition": merged["es_definition"],
        }
    )


def write_results(path: Path, table: pd.DataFrame, before, after, edit, config) -> None:
    if path.suffix.lower() == ".csv":
        table.to_csv(path, index=False)
        return
    payload = {
        "method": edit.method,
        "fact_id": edit.fact_id,
        "source_language": edit.source_language,
        "seconds": edit.seconds,
        "config": json.loads(json.dumps(dataclasses.asdict(config), default=str)),
        "trace": edit.trace,
        "table": json.loads(table.to_json(orient="records")),
        "transferability_after": after.transferability(),
        "details_after": json.loads(after.details.to_json(orient="records")),
    }
    path.write_text(json.dumps(payload, ensure_ascii=False, indent=1), encoding="utf-8")
