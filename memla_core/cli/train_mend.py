"""``memla train-mend``: learn MEND's hypernetwork for the loaded model (once per model).

Edit data: the bundled facts' dev split (never the test split, which the benchmark reports on)
plus any MKEB file (``--data``, e.g. written by ``memla import``) or raw MzsRE / CounterFact /
MLaKE data (``--import FORMAT=PATH``); from those, ``--data-split`` (default ``dev``) is used too.
The run resumes from its last checkpoint when started again with the same settings.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_model_args, load_model_arg


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("train-mend", help="train MEND's hypernetwork for a model (resumable)")
    add_model_args(parser)
    parser.add_argument("--langs", default="all", help="training languages, comma-separated, or 'all' (the data's)")
    parser.add_argument("--data", action="append", default=[], type=Path, metavar="MKEB.json",
                        help="an MKEB file of edits to train on as well (repeatable)")
    parser.add_argument("--import", dest="imports", action="append", default=[], metavar="FORMAT=PATH",
                        help="raw MzsRE / CounterFact / MLaKE data to train on as well, e.g. mzsre=data.json")
    parser.add_argument("--data-split", default="dev", choices=["dev", "test", "all"],
                        help="which half of --data / --import files to use (default dev)")
    parser.add_argument("--no-bundled", action="store_true", help="leave out the bundled facts' dev split")
    parser.add_argument("--steps", type=int, help="training edits (default: MendTrainConfig.steps)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="a MendTrainConfig field (repeatable), e.g. --set lr=1e-4 --set mend.modules=down_proj")
    parser.add_argument("--stop-after", type=int, help="stop after this many steps in all (resume later)")
    parser.add_argument("--restart", action="store_true", help="discard an earlier run's state and start over")
    parser.set_defaults(run=run)


def training_facts(args: argparse.Namespace) -> tuple[list, list[str]]:
    """(facts, source descriptions) from the bundled dev split and the given files."""
    from ..data import load_bundled, load_mkeb
    from ..data.importers import import_dataset
    from ..data.splits import select_split

    facts, sources = [], []
    if not args.no_bundled:
        dev = select_split(load_bundled().facts, "dev")
        facts += dev
        sources.append(f"bundled:dev ({len(dev)} facts)")
    for path in args.data:
        chosen = select_split(load_mkeb(path).facts, args.data_split)
        facts += chosen
        sources.append(f"{path}:{args.data_split} ({len(chosen)} facts)")
    for item in args.imports:
        fmt, sep, path = item.partition("=")
        if not sep:
            raise ValueError(f"--import {item}: expected FORMAT=PATH, e.g. mzsre=zsre_test.json.")
        chosen = select_split(import_dataset(fmt, path).facts, args.data_split)
        facts += chosen
        sources.append(f"{fmt}:{path}:{args.data_split} ({len(chosen)} facts)")
    if not facts:
        raise ValueError("No edit data: drop --no-bundled or give --data / --import files.")
    return facts, sources


def train_config(args: argparse.Namespace):
    from ..editing.mend_training import MendTrainConfig
    from ..editing.registry import set_field

    config = MendTrainConfig()
    for item in args.set:
        path, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set {item}: expected FIELD=VALUE.")
        config = set_field(config, path.strip(), value, owner="train-mend")
    if args.steps is not None:
        config = set_field(config, "steps", args.steps, owner="train-mend")
    return config


def run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from ..editing.mend_training import train_mend

    config = train_config(args)
    facts, sources = training_facts(args)
    languages = None if args.langs == "all" else [c.strip() for c in args.langs.split(",") if c.strip()]
    lm = load_model_arg(args)
    bar = tqdm(desc="MEND training", unit="edit", total=config.steps)

    def progress(done: int, total: int, record: dict) -> None:
        if bar.n == 0:  # first step (after the one-time locality text); resumed runs count on
            bar.reset(total)
            bar.update(done - 1)
        bar.update(done - bar.n)
        bar.set_postfix_str(f"loss {record['loss']:.3f} edit {record['edit']:.3f} loc {record['locality']:.4f}")

    try:
        result = train_mend(
            lm, facts, config, languages=languages, sources=sources, progress=progress,
            stop_after=args.stop_after, restart=args.restart,
        )
    finally:
        bar.close()
    means = result.final_losses()
    print(f"MEND for {lm.key}: {result.steps_done}/{result.total_steps} steps, {result.seconds / 60:.1f} min "
          f"in all; data: {'; '.join(sources)}")
    print("last 50 steps: " + "  ".join(f"{k} {v:.4f}" for k, v in means.items()))
    if result.finished:
        print(f"hypernetwork: {result.directory / 'hypernetwork.pt'}")
    else:
        print(f"stopped early; the same command resumes from {result.directory / 'training_state.pt'}")
    return 0
