"""``memla ability``: general-ability probe accuracy and drift, unedited and after an edit.

    memla ability                                              # the unedited model
    memla ability --fact geo-capital-france --method memla,ft  # and after each edit (reverted between)

Methods are configured as in ``memla edit`` (``--set FIELD=VALUE``): the settings go through
the same parser and ``edit.method_config``, so both commands build identical edits.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from ..ability import (
    QUICK_ITEMS,
    QUICK_SENTENCES,
    TASKS,
    AbilityConfig,
    AbilityReport,
    load_bundled_probe,
    load_sentences,
    measure_ability,
    measure_unedited,
)


def register(sub: argparse._SubParsersAction) -> None:
    from .common import add_dataset_args, add_model_args

    parser = sub.add_parser("ability", help="general-ability probe accuracy and drift, before and after an edit")
    add_model_args(parser)
    add_dataset_args(parser)
    parser.add_argument("--fact", help="fact id to edit (see `memla facts`); without it only the unedited model")
    parser.add_argument("--method", default="memla", help="editing method, or several comma-separated (memla,ft)")
    parser.add_argument("--source-lang", default="en", help="language the edit is written in")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="set a field of the method's config, as in `memla edit` (repeatable)")
    parser.add_argument("--probe", type=Path, help="score a public set from disk instead of the bundled probe")
    parser.add_argument("--probe-format", default="xnli", help="format of --probe: piqa, anli or xnli (default xnli)")
    parser.add_argument("--langs", default="all", help="probe languages, comma-separated, or 'all'")
    parser.add_argument("--items", default=str(QUICK_ITEMS),
                        help=f"items of each task per language, or 'all' (default {QUICK_ITEMS}; all: 62)")
    parser.add_argument("--sentences", default=str(QUICK_SENTENCES),
                        help=f"ordinary sentences per language for drift, or 'all' (default {QUICK_SENTENCES}; all: 20)")
    parser.add_argument("--top-k", type=int, default=AbilityConfig.top_k,
                        help="tokens kept per position of the unedited reference (default 1024)")
    parser.add_argument("--batch-size", type=int, default=AbilityConfig.batch_size)
    parser.add_argument("--out", type=Path, help="write every report (per item and per language) to a .json file")
    parser.set_defaults(run=run)


def _count(value: str, flag: str) -> int | None:
    if value.strip().lower() == "all":
        return None
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise ValueError(f"{flag} {value}: expected a positive number or 'all'.")
    return number


def ability_config(args: argparse.Namespace, languages: tuple[str, ...]) -> AbilityConfig:
    wanted = None
    if args.langs != "all":
        wanted = tuple(c.strip() for c in args.langs.split(",") if c.strip())
        unknown = [c for c in wanted if c not in languages]
        if unknown:
            raise ValueError(f"Language(s) {', '.join(unknown)} not in the probe; choose from {', '.join(languages)} or 'all'.")
    return AbilityConfig(languages=wanted, items_per_task=_count(args.items, "--items"),
                         sentences_per_language=_count(args.sentences, "--sentences"),
                         top_k=args.top_k, batch_size=args.batch_size)


def run(args: argparse.Namespace) -> int:
    from .common import load_dataset_arg, load_model_arg

    if args.probe is not None:
        from ..ability.importers import import_probe

        probe = import_probe(args.probe_format, args.probe)
        for note in probe.notes:
            print(f"note: {note}")
    else:
        probe = load_bundled_probe()
    sentences = load_sentences()
    config = ability_config(args, probe.languages)
    methods = [m.strip() for m in args.method.split(",") if m.strip()]
    fact = None
    if args.fact:
        from ..editing import method_spec

        dataset = load_dataset_arg(args.dataset, args.strict)
        fact = dataset.get(args.fact)
        fact.in_language(args.source_lang)
        for name in methods:
            method_spec(name)  # unknown names fail before the model loads
    lm = load_model_arg(args)
    before, reference = measure_unedited(lm, probe, sentences, config)
    reports = [before]
    for name in methods if fact is not None else []:
        edit = compute_edit(args, lm, dataset, fact, name)
        with edit.applied(lm):
            reports.append(measure_ability(lm, probe, reference, edit=edit, config=config,
                                           label=f"{edit.method} ({edit.seconds:.0f} s edit)"))
    print(describe(reports, reference.coverage, reference.top_k))
    if args.out:
        args.out.write_text(json.dumps([report_dict(r) for r in reports], ensure_ascii=False, indent=1), encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


def compute_edit(args: argparse.Namespace, lm, dataset, fact, method: str):
    """The edit ``memla edit`` would make with the same method and ``--set`` items."""
    from ..editing import EditRequest, build_editor, method_spec
    from ..neurons import find_neurons
    from . import build_parser
    from .edit import method_config
    from .progress import step_bar

    edit_args = build_parser().parse_args(
        ["edit", "--fact", fact.example_id, "--method", method, "--source-lang", args.source_lang,
         *[part for item in args.set for part in ("--set", item)]]
    )
    spec = method_spec(method)
    config = method_config(edit_args, lm)
    neurons = None
    if spec.uses_neurons:
        with step_bar("knowledge neurons (integrated gradients)", unit="prompt") as progress:
            neurons = find_neurons(lm, fact, args.source_lang, spec.neuron_config(config), progress=progress)
    editor = build_editor(spec, config, neurons=neurons, pool=dataset.facts)
    with step_bar(f"{spec.title} edit", unit="step") as progress:
        return editor.compute(
            lm, EditRequest(fact, args.source_lang),
            on_step=lambda r: progress(int(r["step"]) + 1, spec.steps(config) or int(r["step"]) + 1,
                                       f"loss {r['loss']:.3f}"),
        )


def comparison(reports: list[AbilityReport]) -> pd.DataFrame:
    """One row per language (then 'all'): each task's accuracy and the drift, per model state."""
    frames = []
    for report in reports:
        table = report.table().set_index("language").drop(columns=["items"])
        table.columns = pd.MultiIndex.from_product([[report.label], table.columns])
        frames.append(table)
    return pd.concat(frames, axis=1)


def describe(reports: list[AbilityReport], coverage: float, top_k: int) -> str:
    first = reports[0]
    per_language = {lang: sum(1 for r in first.items if r.language == lang and r.task == TASKS[0]) for lang in first.languages}
    lines = [
        "Probe accuracy in % (each choice scored by its mean log-prob per answer token; chance = 50) and drift = "
        "mean KL(unedited ‖ state) in nats per token of ordinary text.",
        f"{max(per_language.values(), default=0)} items per task and language; drift over the top {top_k} tokens "
        f"of the unedited model (they hold {100 * coverage:.1f}% of its probability) plus one bin for the rest.",
        "",
    ]
    with pd.option_context("display.width", 220, "display.max_columns", 30):
        lines.append(comparison(reports).to_string(float_format=lambda v: "nan" if math.isnan(v) else f"{v:.3g}"))
    lines.append("")
    lines += [f"{r.label}: {r.seconds:.1f} s to measure" for r in reports]
    return "\n".join(lines)


def report_dict(report: AbilityReport) -> dict:
    return {
        "label": report.label,
        "seconds": report.seconds,
        "top_k": report.top_k,
        "coverage": report.coverage,
        "accuracy": {task: report.accuracy(task) for task in TASKS},
        "mean_drift": report.mean_drift,
        "table": json.loads(report.table().to_json(orient="records")),
        "drift": [asdict(d) for d in report.drift],
        "items": [asdict(r) for r in report.items],
    }
