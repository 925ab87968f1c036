"""The ``memla`` command line. Each subcommand lives in its own module with a ``register``."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from . import ability, bench, edit, facts, importing, neurons, sweep, train_mend

COMMANDS = (facts, neurons, edit, importing, bench, sweep, ability, train_mend)


class CLIError(Exception):
    """A user mistake: printed as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="memla", description="Multilingual knowledge editing (MEMLA) and the MKEB benchmark."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show library logs")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("memla: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # one readable line; --verbose shows the traceback
        if args.verbose:
            raise
        message = str(err).strip().splitlines()
        print(f"memla: error: {message[0] if message else type(err).__name__}", file=sys.stderr)
        for line in message[1:6]:
            print(f"  {line}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
