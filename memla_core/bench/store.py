"""The results file: one tidy CSV row per (fact, method, source, target), appended group by group.

Appending and flushing after every (fact, method, source) group means an interrupted run loses at
most the group in flight; a run that starts again reads the file and skips finished groups. Each
row is one line (answers and errors are flattened), so a line cut off by a crash is recognisable
and dropped. Parallel processes write their own ``<out>.part<i>.csv``, merged by the main process.
"""

from __future__ import annotations

import io
import logging
import math
import os
import re
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import pandas as pd

log = logging.getLogger(__name__)

Key = tuple[str, str, str]  # (fact_id, method, source_lang): the unit that is edited and resumed

KEY_COLUMNS: tuple[str, ...] = ("fact_id", "method", "source_lang")
METRIC_COLUMNS: tuple[str, ...] = ("ES", "PS", "NS", "QS")
BEFORE_COLUMNS: tuple[str, ...] = (
    *(f"{m}_before" for m in METRIC_COLUMNS), "p_new_before", "p_true_before", "answer_before",
)
"""The unedited model's scores on the same prompts (docs/benchmarks.md, "Known pairs")."""
TIMING_COLUMNS: tuple[str, ...] = ("seconds_neurons", "seconds_edit", "seconds_eval")
RESULT_COLUMNS: tuple[str, ...] = (
    *KEY_COLUMNS,
    "target_lang",
    *METRIC_COLUMNS,
    "es_definition",
    "p_new",
    "p_true",
    "answer",
    *BEFORE_COLUMNS,
    "edit_steps",
    *TIMING_COLUMNS,
    "error",
    "health",
    "model",
    "seed",
    "settings",
)
SERIES_COLUMNS: tuple[str, ...] = ("run", "step", "edits", "role", "ability_accuracy", "drift", "run_settings")
"""Added after ``RESULT_COLUMNS`` in the results file of a sequential or batch run
(``bench.series``, docs/batch_and_sequential.md); a single-edit run's file has none of them."""
SERIES_RESULT_COLUMNS: tuple[str, ...] = (*RESULT_COLUMNS, *SERIES_COLUMNS)
SERIES_KEY_COLUMNS: tuple[str, ...] = ("run", "method", "source_lang", "step", "role", "fact_id", "target_lang")
"""One row of a sequential or batch run: ``step`` and ``role`` tell apart the rows of one fact."""
STRING_COLUMNS: tuple[str, ...] = (
    *KEY_COLUMNS, "target_lang", "es_definition", "answer", "answer_before", "error", "health", "model", "settings",
    "run", "role", "run_settings",
)


def one_line(text: object) -> str:
    """Newlines would break the one-row-per-line property that crash recovery relies on. A missing
    value (None, or NaN where a row lacks the field) is empty, never the text "nan"."""
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return ""
    return " ".join(str(text).split())


def empty_results(columns: Sequence[str] = RESULT_COLUMNS) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=str if c in STRING_COLUMNS else float) for c in columns})


def is_series(frame: pd.DataFrame) -> bool:
    """Rows of a sequential or batch run (``bench.series``), not of single edits."""
    return "run" in frame.columns and bool((frame["run"] != "").any())


def columns_of(rows: Iterable[Mapping[str, object]] | pd.DataFrame) -> tuple[str, ...]:
    """The columns a file of these rows has: ``SERIES_RESULT_COLUMNS`` when they carry a ``run``."""
    if isinstance(rows, pd.DataFrame):  # a series file's frame keeps its columns even with no row left
        return SERIES_RESULT_COLUMNS if "run" in rows.columns else RESULT_COLUMNS
    return SERIES_RESULT_COLUMNS if any(row.get("run") for row in rows) else RESULT_COLUMNS


def rows_frame(rows: Iterable[Mapping[str, object]]) -> pd.DataFrame:
    rows = list(rows)
    columns = columns_of(rows)
    frame = pd.DataFrame(rows, columns=list(columns))
    for column in STRING_COLUMNS:
        if column in frame:
            frame[column] = frame[column].map(one_line)
    return frame


def part_path(out: Path, index: int) -> Path:
    """``results.csv`` -> ``results.part3.csv``: the file process 3 appends to."""
    return out.with_name(f"{out.stem}.part{index}{out.suffix}")


def part_paths(out: Path) -> list[Path]:
    pattern = re.compile(re.escape(out.stem) + r"\.part(\d+)" + re.escape(out.suffix) + "$")
    found = [p for p in out.parent.glob(f"{out.stem}.part*{out.suffix}") if pattern.match(p.name)]
    return sorted(found, key=lambda p: int(pattern.match(p.name).group(1)))


def read_results(path: Path) -> pd.DataFrame:
    """Rows of a results file (empty when absent), without a last line cut off by a crash."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return empty_results()
    return parse_results(path.read_text(encoding="utf-8"), str(path))


CUT_OFF_LINE = "cut_off_line"
"""``frame.attrs`` key: the text of a last line dropped because a write was interrupted."""


def parse_results(
    text: str, name: str = "results", fix: str = "choose another results file (--out) or delete it"
) -> pd.DataFrame:
    """``read_results`` for text that is not a file of ours (an upload in the app). ``fix`` ends
    the message for a file that is not a results file, in the caller's terms. A dropped cut-off
    last line is kept in ``frame.attrs[CUT_OFF_LINE]`` for front ends to show."""
    cut = ""
    if not text.endswith("\n"):
        log.warning("%s ends in a cut-off line (interrupted write); it is dropped.", name)
        cut = text[text.rfind("\n") + 1 :]
        text = text[: text.rfind("\n") + 1]
    frame = _parse_complete(text, name, fix)
    if cut:
        frame.attrs[CUT_OFF_LINE] = cut
    return frame


def _parse_complete(text: str, name: str, fix: str) -> pd.DataFrame:
    if not text.strip():
        return empty_results()
    frame = pd.read_csv(
        io.StringIO(text), dtype={c: str for c in STRING_COLUMNS}, keep_default_na=False, na_values=[""]
    )
    missing = [c for c in KEY_COLUMNS + ("target_lang",) if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{name} is not a memla bench results file (no column {', '.join(missing)}); {fix}."
        )
    columns = SERIES_RESULT_COLUMNS if "run" in frame.columns else RESULT_COLUMNS
    for column in columns:
        if column not in frame.columns:
            frame[column] = "" if column in STRING_COLUMNS else float("nan")
    for column in STRING_COLUMNS:
        if column in columns:
            frame[column] = frame[column].fillna("")
    return frame[list(columns)]


def append_rows(path: Path, rows: Iterable[Mapping[str, object]]) -> None:
    """Append rows and force them to disk: after this returns, a crash cannot lose them."""
    frame = rows_frame(rows)
    if frame.empty:
        return
    path = Path(path)
    header = not path.exists() or path.stat().st_size == 0
    text = frame.to_csv(index=False, header=header, lineterminator="\n")
    with open(path, "a", encoding="utf-8", newline="") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def write_results(path: Path, frame: pd.DataFrame) -> None:
    """Replace a results file atomically (a crash leaves the old or the new file, never half)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    out = frame.reindex(columns=list(columns_of(frame)))
    out.to_csv(tmp, index=False, lineterminator="\n")
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    tmp.replace(path)


def read_all(out: Path) -> pd.DataFrame:
    """The results file and any part files left by parallel processes, duplicates removed."""
    frames = [read_results(p) for p in [out, *part_paths(out)]]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return empty_results()
    merged = pd.concat(frames, ignore_index=True)
    key = list(SERIES_KEY_COLUMNS) if is_series(merged) else [*KEY_COLUMNS, "target_lang"]
    return merged.drop_duplicates(subset=key, keep="first").reset_index(drop=True)


def incomplete_keys(frame: pd.DataFrame, expected: Mapping[Key, frozenset[str]]) -> set[Key]:
    """Groups this run expects whose rows miss some target language (written only in part)."""
    present: dict[Key, set[str]] = {}
    for key, target in zip(frame[list(KEY_COLUMNS)].itertuples(index=False, name=None), frame["target_lang"]):
        present.setdefault(tuple(key), set()).add(target)
    return {key for key, targets in present.items() if key in expected and not expected[key] <= targets}


def completed_keys(frame: pd.DataFrame, expected: Mapping[Key, frozenset[str]]) -> set[Key]:
    keys = set(frame[list(KEY_COLUMNS)].itertuples(index=False, name=None))
    return {k for k in keys if k in expected} - incomplete_keys(frame, expected)


def drop_keys(frame: pd.DataFrame, keys: set[Key]) -> pd.DataFrame:
    if not keys:
        return frame
    mask = [tuple(k) not in keys for k in frame[list(KEY_COLUMNS)].itertuples(index=False, name=None)]
    return frame[mask].reset_index(drop=True)
