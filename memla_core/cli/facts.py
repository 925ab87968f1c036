"""``memla facts``: list facts, or print counts per relation and language."""

from __future__ import annotations

import argparse

from .common import add_dataset_args, load_dataset_arg


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("facts", help="list the facts of a dataset, or their counts (--stats)")
    add_dataset_args(parser)
    parser.add_argument("--stats", action="store_true", help="counts per relation and language")
    parser.add_argument("--search", default="", help="only facts whose id, subject or relation contains this")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    dataset = load_dataset_arg(args.dataset)
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
