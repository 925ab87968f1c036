"""The dataset shipped with memla (``assets/mkeb_bundled.json``, see assets/DATASHEET.md)."""

from __future__ import annotations

from functools import lru_cache

from ..paths import ASSETS_DIR
from .loader import MKEBDataset, load_mkeb

BUNDLED_DATASET_PATH = ASSETS_DIR / "mkeb_bundled.json"


@lru_cache(maxsize=1)
def load_bundled() -> MKEBDataset:
    """The bundled MKEB-format dataset (12 languages), validated once per process."""
    return load_mkeb(BUNDLED_DATASET_PATH, name="bundled MKEB")
