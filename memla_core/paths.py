"""Where memla keeps its on-disk cache and where the repo's bundled assets live."""

from __future__ import annotations

import os
from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"


def cache_dir() -> Path:
    """``$MEMLA_CACHE``, else ``$XDG_CACHE_HOME/memla``, else ``~/.cache/memla``."""
    env = os.environ.get("MEMLA_CACHE")
    if env:
        path = Path(env).expanduser()
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        path = Path(base) / "memla"
    path.mkdir(parents=True, exist_ok=True)
    return path
