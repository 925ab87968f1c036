"""``memla edit``: edit one fact, evaluate before and after in the requested languages."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..editing import EditRequest, MethodSpec, method_spec
from ..editing.presets import PRESETS, describe_preset
from ..editing.registry import (
    METHODS,
    STEPS_ALIAS,
    ConfigFieldError,
    build_editor,
    coerce,
    config_field,
    config_fields,
    default_config,
    has_field,
    set_field,
)
from ..bounds import DEFAULT_MAX_PROMPT_TOKENS, MAX_PROMPT_TOKENS_ENV, check_prompt_lengths
from ..evaluation import METRICS, P_NEW_FLOOR, evaluate
from ..health import EditHealth, edit_health
from ..neurons import find_neurons
from ..outputs import check_output_path, write_or_keep
from .common import add_dataset_args, add_model_args, load_dataset_arg, load_model_arg, parse_languages
from .neurons import add_neuron_args
from .progress import step_bar


@dataclass(frozen=True)
class SettingFlag:
    """A command-line flag that sets one config field of whichever method is chosen."""

    dest: str  # argparse destination (``--max-steps`` -> ``max_steps``)
    path: str  # config field; ``edit_steps`` = the method's step field

    @property
    def option(self) -> str:
        return "--" + self.dest.replace("_", "-")


SETTING_FLAGS = (
    SettingFlag("rank_multiplier", "rank_multiplier"),
    SettingFlag("lr", "lr"),
    SettingFlag("max_steps", STEPS_ALIAS),
    SettingFlag("coefficient", "coefficient"),
    SettingFlag("ig_steps", "neurons.steps"),
    SettingFlag("ig_baseline", "neurons.baseline"),
    SettingFlag("threshold", "neurons.threshold"),
    SettingFlag("independent_langs", "neurons.independent_languages"),
)
"""Flags given for a method whose config lacks the field are refused, never ignored."""


def _methods_with(path: str) -> str:
    return ", ".join(s.title for s in METHODS.values() if has_field(s.config_cls, s.resolve_path(path))) or "none"


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("edit", help="edit one fact and evaluate it across languages")
    add_model_args(parser)
    add_dataset_args(parser, strict_help="exit with status 3 when the edit is degenerate (health check), and reject "
                     "datasets with a language missing from paraphrases or multi-hop questions")
    parser.add_argument("--fact", required=True, help="fact id (see `memla facts`)")
    parser.add_argument("--source-lang", default="en", help="language the edit is written in")
    parser.add_argument("--langs", default="all", help="target languages, comma-separated, or 'all'")
    parser.add_argument("--method", default="memla", help=f"editing method: {', '.join(METHODS)}")
    parser.add_argument(
        "--preset", choices=list(PRESETS), default="tuned",
        help="defaults to start from: 'tuned' (chosen on the dev split for this model, docs/tuning.md; the paper's "
        "where none were chosen) or 'paper' (the paper's settings); flags and --set apply on top",
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="FIELD=VALUE",
        help="set a field of the method's config (repeatable): --set lr=0.01, --set neurons.threshold=0.2, "
        "--set layer=none (the architecture's default); edit_steps is every method's step count",
    )
    group = parser.add_argument_group(
        "method settings (each sets a config field, docs/method.md; refused for a method whose config lacks it)"
    )
    group.add_argument("--rank-multiplier", type=int, help=f"n, LoRA rank per neuron ({_methods_with('rank_multiplier')})")
    group.add_argument("--lr", type=float, help=f"learning rate, field lr ({_methods_with('lr')})")
    group.add_argument(
        "--max-steps", type=int, help=f"optimisation steps: the method's step field ({_methods_with(STEPS_ALIAS)})"
    )
    group.add_argument("--coefficient", type=float, help=f"c in W + c·ΔW ({_methods_with('coefficient')})")
    variants = "; ".join(f"{s.title}: {', '.join(s.variants)}" for s in METHODS.values() if s.variants)
    group.add_argument("--ablation", help=f"a variant of the method ({variants})")
    add_neuron_args(parser)
    # Unset neuron flags stay None, so that one given for a method without neurons is refused.
    parser.set_defaults(ig_steps=None, ig_baseline=None, threshold=None, independent_langs=None)
    parser.add_argument("--out", type=Path, help="write results: .json (everything) or .csv (the table)")
    parser.add_argument(
        "--max-prompt-tokens", type=int,
        help=f"refuse facts with a longer prompt (default ${MAX_PROMPT_TOKENS_ENV} or {DEFAULT_MAX_PROMPT_TOKENS})",
    )
    parser.add_argument(
        "--p-new-floor", type=float, default=P_NEW_FLOOR,
        help=f"ES/PS count a prompt only when P(new) per answer token is at least this (default {P_NEW_FLOOR:g}); "
        "0 = the paper's pure P(new)>P(true)",
    )
    parser.set_defaults(run=run)


DEGENERATE_EXIT = 3
"""``--strict`` and the edit is degenerate (2 is a usage error, see ``cli.main``)."""


def requested_settings(args: argparse.Namespace, spec: MethodSpec) -> list[tuple[str, Any]]:
    """(config field, value) for every setting flag given and every ``--set``, in that order.

    Checked against the method's config before any model loads: a flag the method has no field
    for, an unknown field or a value of the wrong type is an error naming it.
    """
    requested: list[tuple[str, str, Any]] = []
    for flag in SETTING_FLAGS:
        value = getattr(args, flag.dest)
        if value is None:
            continue
        path = spec.resolve_path(flag.path)
        if not has_field(spec.config_cls, path):
            what = "no step count" if path is None else f"no field '{flag.path}'"
            raise ValueError(
                f"{flag.option} does not apply to {spec.title}: its config has {what} (the flag applies to "
                f"{_methods_with(flag.path)}). Set {spec.title}'s fields with --set FIELD=VALUE: {_field_list(spec)}."
            )
        requested.append((flag.option, path, value))
    if args.no_cache and not spec.uses_neurons:
        raise ValueError(f"--no-cache applies to methods that find knowledge neurons ({_neuron_methods()}), not {spec.title}.")
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--set {item}: expected FIELD=VALUE with FIELD one of {_field_list(spec)}.")
        path = spec.resolve_path(name.strip())
        if not has_field(spec.config_cls, path):
            what = "no step count" if path is None else f"no field '{name.strip()}'"
            raise ValueError(f"--set {item}: {spec.title} has {what}; fields: {_field_list(spec)}.")
        requested.append((f"--set {item}", path, value))
    settings = []
    for option, path, value in requested:
        try:
            settings.append((path, coerce(value, config_field(spec.config_cls, path))))
        except ConfigFieldError as err:
            raise ValueError(f"{option}: {err}") from None
    return settings


def _field_list(spec: MethodSpec) -> str:
    return ", ".join(f.path for f in config_fields(spec.config_cls))


def _neuron_methods() -> str:
    return ", ".join(s.title for s in METHODS.values() if s.uses_neurons) or "none"


def method_variant(args: argparse.Namespace, spec: MethodSpec) -> str | None:
    """The ``--ablation`` variant's label, or None; refused for a method without variants."""
    if args.ablation is None:
        return None
    if not spec.variants:
        others = ", ".join(s.title for s in METHODS.values() if s.variants) or "none"
        raise ValueError(f"--ablation does not apply to {spec.title}: it has no variants (methods with variants: {others}).")
    try:
        return spec.variant_label(args.ablation)
    except ConfigFieldError as err:
        raise ValueError(f"--ablation: {err}") from None


def method_config(args: argparse.Namespace, lm):
    """The method's defaults for ``lm``, then the ``--ablation`` variant, the flags and ``--set`` items."""
    spec = method_spec(args.method)
    variant = method_variant(args, spec)
    settings = requested_settings(args, spec)
    config = default_config(spec, lm, preset=getattr(args, "preset", "paper"))
    if variant is not None:
        config = spec.with_variant(config, variant)
    for path, value in settings:
        config = set_field(config, path, value, owner=spec.name)
    return config


def run(args: argparse.Namespace) -> int:
    if args.out is not None:
        check_output_path(args.out, (".json", ".csv"))  # now, not after minutes of computation
    dataset = load_dataset_arg(args.dataset, args.strict)
    fact = dataset.get(args.fact)
    fact.in_language(args.source_lang)
    languages = parse_languages(args.langs, fact)
    spec = method_spec(args.method)  # every argument is checked before the model loads
    method_variant(args, spec)
    requested_settings(args, spec)
    lm = load_model_arg(args)
    check_prompt_lengths(lm.tokenizer, fact, [args.source_lang, *languages], args.max_prompt_tokens)
    config = method_config(args, lm)
    neurons = None
    if spec.uses_neurons:
        with step_bar("knowledge neurons (integrated gradients)", unit="prompt") as progress:
            neurons = find_neurons(
                lm, fact, args.source_lang, spec.neuron_config(config), cache=False if args.no_cache else None,
                progress=progress,
            )
    # The dataset's facts are the demonstration pool of in-context methods (IKE).
    editor = build_editor(spec, config, neurons=neurons, pool=dataset.facts)
    before = evaluate(lm, fact, languages, source_language=args.source_lang, p_new_floor=args.p_new_floor)
    with step_bar(f"{spec.title} edit", unit="step") as progress:
        edit = editor.compute(
            lm, EditRequest(fact, args.source_lang),
            on_step=lambda r: progress(int(r["step"]) + 1, spec.steps(config) or int(r["step"]) + 1,
                                       f"loss {r['loss']:.3f} P(new) {r['p_new']:.2f}"),
        )
    with edit.applied(lm):
        after = evaluate(lm, fact, languages, edit=edit, p_new_floor=args.p_new_floor)
    health = edit_health(lm, edit, fact, languages)
    table = comparison_table(before.summary, after.summary)
    print(f"{spec.title} edit of {fact.label}, written in {args.source_lang}; "
          f"{len(edit.trace)} steps, {edit.seconds:.1f} s")
    print(describe_preset(spec.name, lm, args.preset))
    shown = table.drop(columns=[f"{m}_before" for m in METRICS])
    formats = {c: (lambda v: f"{v:.3g}") for c in shown.columns if c.startswith("P(")}
    formats.update({m: (lambda v: f"{v:.1f}") for m in METRICS})
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_colwidth", 24):
        print(shown.to_string(index=False, formatters=formats))
    avg = after.transferability()
    print(f"{args.source_lang}-avg: " + "  ".join(f"{m} {avg[m]:.1f}" for m in METRICS if not math.isnan(avg[m])))
    print(f"ES/PS: {table['es_definition'].iloc[0]}")
    if health.degenerate:
        print(f"memla: warning: degenerate edit, the scores above are not to be trusted: {'; '.join(health.problems)}. "
              "Lower the learning rate or the number of steps.", file=sys.stderr)
    else:
        print(f"health: ok ({health.describe()})")
    if args.out:
        write_or_keep(args.out, lambda path: write_results(path, table, before, after, edit, config, health))
        print(f"wrote {args.out}")
    return DEGENERATE_EXIT if args.strict and health.degenerate else 0


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


def write_results(path: Path, table: pd.DataFrame, before, after, edit, config, health: EditHealth | None = None) -> None:
    if path.suffix.lower() == ".csv":
        table.assign(health=health.label if health else "").to_csv(path, index=False)
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
        "health": None if health is None else {
            "label": health.label, "drift_kl": health.drift_kl, "fluency_increase": health.fluency_increase,
            "bounds": dataclasses.asdict(health.bounds),
        },
        "details_after": json.loads(after.details.to_json(orient="records")),
    }
    path.write_text(json.dumps(payload, ensure_ascii=False, indent=1), encoding="utf-8")
