"""Importers from other knowledge-editing datasets into MKEB, one module per format.

Each importer builds records in the canonical MKEB layout, validates them with ``load_mkeb``
(so every dataset obeys the same rules) and lists each fallback it used, with counts, in
``MKEBDataset.notes``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..loader import MKEBDataset
from ._common import importer_for
from .counterfact import import_counterfact
from .mlake import import_mlake
from .mzsre import import_mzsre

IMPORTERS: dict[str, Callable[[str | Path], MKEBDataset]] = {
    "mzsre": import_mzsre,
    "mlake": import_mlake,
    "counterfact": import_counterfact,
}
"""Format name -> importer taking a file (MzsRE, CounterFact) or folder (MLaKE)."""


def import_dataset(fmt: str, path: str | Path) -> MKEBDataset:
    """Import ``path`` in format ``fmt`` (a key of ``IMPORTERS``, case-insensitive)."""
    return importer_for(IMPORTERS, fmt, "dataset")(path)


__all__ = ["IMPORTERS", "import_counterfact", "import_dataset", "import_mlake", "import_mzsre"]
