"""``memla import``: convert a public multilingual editing dataset into an MKEB file."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("import", help="convert MzsRE / MLaKE / CounterFact data into an MKEB file")
    parser.add_argument("format", help="source format: mzsre, mlake (a folder) or counterfact")
    parser.add_argument("path", type=Path, help="the source file or folder")
    parser.add_argument("--out", type=Path, required=True, help="MKEB JSON file to write")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..data.importers import import_dataset

    dataset = import_dataset(args.format, args.path)
    dataset.save(args.out)
    print(f"wrote {len(dataset)} facts in {', '.join(dataset.languages)} to {args.out}")
    for note in dataset.notes:
        print(f"note: {note}")
    return 0
