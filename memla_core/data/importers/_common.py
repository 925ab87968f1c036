"""Helpers shared by the importers: reading JSON, type checks, fallback counts, validation.

Every importer builds raw records in the canonical MKEB layout and hands them to
``load_mkeb`` so there is one validator; these helpers keep the format-specific
modules down to the mapping itself.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

from ..loader import DatasetError, MKEBDataset, load_mkeb

logger = logging.getLogger("memla_core.data.importers")


def read_json(path: Path, source: str) -> Any:
    """Parsed JSON of ``path``; a missing file or bad JSON becomes a DatasetError."""
    if not path.is_file():
        raise DatasetError([f"file not found: {path}"], source=source)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DatasetError([f"{path.name} is not valid JSON: {err}"], source=source) from None
    except UnicodeDecodeError as err:
        raise DatasetError([f"{path.name} is not UTF-8 text: {err}"], source=source) from None


def read_json_list(path: Path, source: str, what: str) -> list[Any]:
    """A JSON file that must hold a list (``what`` says of what, for the error)."""
    data = read_json(path, source)
    if not isinstance(data, list):
        raise DatasetError(
            [f"{path.name}: expected a JSON list of {what}, got a {type(data).__name__}"], source=source
        )
    return data


def string_field(raw: dict, key: str, where: str, problems: list[str], required: bool = True) -> str | None:
    """``raw[key]`` if it is a string; records a problem if it is missing (when required) or not a string."""
    if key not in raw or raw[key] is None:
        if required:
            problems.append(f"{where}.{key}: missing")
        return None
    value = raw[key]
    if not isinstance(value, str):
        problems.append(f"{where}.{key}: expected a string, got {type(value).__name__}")
        return None
    return value


def string_list_field(raw: dict, key: str, where: str, problems: list[str]) -> list[str]:
    """``raw[key]`` as a list of strings (absent -> empty); anything else is a problem."""
    value = raw.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        problems.append(f"{where}.{key}: expected a list of strings")
        return []
    return value


def by_language(counts: Counter[str]) -> str:
    """``Counter({'de': 3, 'fr': 1})`` -> ``'de 3, fr 1'`` (largest first)."""
    return ", ".join(f"{key} {n}" for key, n in counts.most_common())


def sample_ids(ids: Iterable[object], limit: int = 10) -> str:
    """A short, readable list of record ids for a note."""
    ids = list(ids)
    shown = ", ".join(str(i) for i in ids[:limit])
    return shown + (f", … ({len(ids)} in all)" if len(ids) > limit else "")


def skip_notes(skipped_blocks: list, dropped_records: list) -> list[str]:
    """Notes shared by importers that skip unusable language blocks and empty records."""
    notes = []
    if skipped_blocks:
        notes.append(f"{len(skipped_blocks)} unusable language blocks skipped: {sample_ids(skipped_blocks)}.")
    if dropped_records:
        notes.append(f"{len(dropped_records)} records dropped (no usable block): {sample_ids(dropped_records)}.")
    return notes


def validated(records: list[dict], name: str, notes: list[str]) -> MKEBDataset:
    """Run imported records through the shared loader and attach the importer's notes."""
    if not records:
        raise DatasetError(["no usable record was found", *notes], source=name)
    dataset = load_mkeb(records, name=name)
    dataset.notes = list(notes)
    for note in notes:
        logger.info("%s: %s", name, note)
    return dataset
