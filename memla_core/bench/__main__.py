"""``python -m memla_core.bench ...`` = ``memla bench ...``; the form ``accelerate launch -m`` needs."""

import sys

from memla_core.cli import main

raise SystemExit(main(["bench", *sys.argv[1:]]))
