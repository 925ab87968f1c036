"""``memla facts``: list facts, or print counts per relation and language."""

from __future__ import annotations

import argparse

from ..data import MKEBDataset
from ..data.splits import select_split
from .common import add_dataset_args, add_model_args, load_dataset_arg, load_model_arg


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("facts", help="list the facts of a dataset, or their counts (--stats)")
    add_dataset_args(parser)
    parser.add_argument("--stats", action="store_true", help="counts per relation and language")
    parser.add_argument("--search", default="", help="only facts whose id, subject or relation contains this")
    parser.add_argument(
        "--known", action="store_true",
        help="only facts the model knows (greedy decoding gives the true answer) in --lang; with --stats, "
        "known counts per language. Checks are cached per model under MEMLA_CACHE",
    )
    parser.add_argument("--lang", default="en", help="language --known checks (default en; 'any': in some language)")
    parser.add_argument("--split", choices=["dev", "test", "all"], default="all",
                        help="only the facts of the dev or test split (docs/tuning.md; default all)")
    add_model_args(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    dataset = load_dataset_arg(args.dataset, args.strict)
    if args.split != "all":
        dataset = MKEBDataset(select_split(dataset.facts, args.split), f"{dataset.name} ({args.split} split)", dataset.notes)
    if args.known:
        return _run_known(args, dataset)
    if args.stats:
        print(f"{dataset.name}: {len(dataset)} facts, languages {', '.join(dataset.languages)}")
        multi_hop = sum(1 for f in dataset if any(b.multi_hop_questions for b in f.languages.values()))
        print(f"facts with multi-hop questions: {multi_hop}")
        print(dataset.stats().to_string())
        for note in dataset.notes:
            print(f"note: {note}")
        return 0
    needle = args.search.lower()
    for fact in dataset:
        if needle and needle not in fact.label.lower() and needle not in fact.relation.lower():
            continue
        print(fact.label)
    return 0


def _run_known(args: argparse.Namespace, dataset) -> int:
    from ..knowledge import check_knowledge, known_counts
    from .progress import step_bar

    if args.lang != "any" and args.lang not in dataset.languages:
        raise ValueError(f"--lang {args.lang} is in no fact; choose from {', '.join(dataset.languages)} or 'any'.")
    lm = load_model_arg(args)
    languages = None if args.lang == "any" or args.stats else [args.lang]
    with step_bar("checking what the model knows", unit="prompt") as bar:
        checks = check_knowledge(lm, dataset, languages, progress=lambda done, total: bar(done, total, ""))
    if args.stats:
        print(f"{dataset.name} on {lm.key}: facts whose true answer greedy decoding produces, per language")
        print(known_counts(checks).to_string(index=False, float_format=lambda v: f"{v:.1f}"))
        return 0
    known: dict[str, list[str]] = {}
    for check in checks:
        if check.known:
            known.setdefault(check.fact_id, []).append(check.language)
    needle = args.search.lower()
    shown = 0
    for fact in dataset:
        if fact.example_id in known and (not needle or needle in fact.label.lower() or needle in fact.relation.lower()):
            print(f"{fact.label}  [known in {', '.join(known[fact.example_id])}]")
            shown += 1
    print(f"{shown} of {len(dataset)} facts known in {args.lang} by {lm.key}")
    return 0
