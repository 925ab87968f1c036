"""``memla neurons``: knowledge neurons of one fact."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..neurons import NeuronConfig, find_neurons
from .common import add_dataset_args, add_model_args, load_dataset_arg, load_model_arg
from .progress import step_bar


def add_neuron_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("knowledge neurons (integrated gradients)")
    defaults = NeuronConfig()
    group.add_argument("--ig-steps", type=int, default=defaults.steps, help="Riemann steps m (default 20)")
    group.add_argument("--ig-baseline", choices=["eos", "zero"], default=defaults.baseline)
    group.add_argument("--threshold", type=float, default=defaults.threshold, help="adaptive threshold (0.3)")
    group.add_argument(
        "--independent-langs", default=",".join(defaults.independent_languages),
        help="languages intersected for language-independent neurons (default en,zh,fr)",
    )
    group.add_argument("--no-cache", action="store_true", help="recompute attributions even if cached")


def neuron_config(args: argparse.Namespace) -> NeuronConfig:
    return NeuronConfig(
        steps=args.ig_steps,
        baseline=args.ig_baseline,
        threshold=args.threshold,
        independent_languages=tuple(c.strip() for c in args.independent_langs.split(",") if c.strip()),
    )


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("neurons", help="find the knowledge neurons of one fact")
    add_model_args(parser)
    add_dataset_args(parser)
    parser.add_argument("--fact", required=True, help="fact id (see `memla facts`)")
    parser.add_argument("--source-lang", default="en")
    add_neuron_args(parser)
    parser.add_argument("--out", type=Path, help="write the neuron table as CSV")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    dataset = load_dataset_arg(args.dataset)
    fact = dataset.get(args.fact)
    fact.in_language(args.source_lang)
    config = neuron_config(args)
    lm = load_model_arg(args)
    with step_bar("integrated gradients", unit="prompt") as progress:
        sets = find_neurons(lm, fact, args.source_lang, config, cache=False if args.no_cache else None, progress=progress)
    print(f"fact {fact.label}")
    for lang, neurons in sets.per_language.items():
        print(f"  N^{lang}: {len(neurons)} neurons")
    print(f"  language-independent ({'∩'.join(config.independent_languages)}): {len(sets.language_independent)}")
    print(f"  language-specific ({args.source_lang}): {len(sets.language_specific)}")
    print(sets.layer_counts().to_string(index=False))
    if args.out:
        sets.to_frame().to_csv(args.out, index=False)
        print(f"wrote {args.out}")
    return 0
