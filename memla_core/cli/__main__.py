"""``python -m memla_core.cli`` = ``memla`` (the form ``accelerate launch -m`` needs)."""

from . import main

raise SystemExit(main())
