"""The paper's reported numbers (Xie et al., 2024; mGPT 1.3B), shipped in ``assets/paper/``.

``assets/paper/README.md`` says how the tables were transcribed and which cells are uncertain.
All values are percentages. This module is the one reader of those files (the app's
``views.paper_table`` goes through it).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pandas as pd

from ..editing.registry import METHODS
from ..paths import ASSETS_DIR

PAPER_DIR = ASSETS_DIR / "paper"

PAPER_TARGET_ORDER: tuple[str, ...] = ("en", "zh", "fr", "de", "it", "es", "pt", "pl", "ru", "ja", "ko", "th")
"""Column order of Tables 3 and 4 (Table 4 uses the same order with zh as source)."""
PAPER_METHODS: tuple[str, ...] = ("ike", "ft", "rome", "mend", "pmet", "memit", "memla")
"""Row order of Tables 3 and 4, as registry names."""
PAPER_METHOD_ORDER: tuple[str, ...] = tuple(METHODS[name].title for name in PAPER_METHODS)
"""The same rows as every table labels them: the registry's titles. The paper's "FT" row is the
registry's ``ft`` (FT-L, the constrained fine-tuning baseline of ROME), shown as "FT-L"."""
PAPER_TABLE_OF_SOURCE: dict[str, int] = {"en": 3, "zh": 4}
"""Table 3 edits in English, Table 4 in Chinese."""


@dataclass(frozen=True)
class PaperTables:
    main: pd.DataFrame  # Tables 3/4: table, metric, method, source_lang, target_lang, value
    ablation: pd.DataFrame  # Table 5: variant, setting, metric, value
    multihop: pd.DataFrame  # Table 6: method, setting, value
    prompt_lengths: pd.DataFrame  # Table 1: language, prompt_type, avg_length


def load_paper_tables(root: Path | None = None) -> PaperTables:
    """The four paper tables as DataFrames (read once per process for the default folder)."""
    return _load(str(root or PAPER_DIR))


@lru_cache(maxsize=4)
def _load(root: str) -> PaperTables:
    folder = Path(root)
    names = ("main_results.csv", "ablation.csv", "multihop.csv", "prompt_lengths.csv")
    missing = [name for name in names if not (folder / name).exists()]
    if missing:
        raise FileNotFoundError(
            f"Paper tables {', '.join(missing)} are missing from {folder}; reinstall memla (they ship in "
            "its assets/paper/ folder)."
        )
    frames = [pd.read_csv(folder / name, keep_default_na=False, na_values=[""]) for name in names]
    frames[0]["table"] = frames[0]["table"].astype("Int64")
    for frame in (frames[0], frames[2]):  # the transcription keeps the paper's labels; tables show titles
        frame["method"] = frame["method"].map(_title)
    return PaperTables(*frames)


def _title(label: str) -> str:
    """A paper row label -> the registry's title (``FT`` -> ``FT-L``); unknown labels unchanged."""
    spec = METHODS.get(str(label).lower())
    return spec.title if spec is not None else label
