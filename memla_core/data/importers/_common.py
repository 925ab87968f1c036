"""Helpers shared by the importers: reading JSON, type checks, fallback counts, validation.

Every importer builds raw records in the canonical MKEB layout and hands them to
``load_mkeb`` so there is one validator; these helpers keep the format-specific
modules down to the mapping itself.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, TypeVar

from ..loader import DatasetError, MKEBDataset, load_mkeb

logger = logging.getLogger("memla_core.data.importers")
T = TypeVar("T")


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


def importer_for(importers: Mapping[str, Callable[..., T]], fmt: str, kind: str) -> Callable[..., T]:
    """The importer of format ``fmt`` (case-insensitive); an unknown one is an error listing the
    ``kind`` formats there are (fact datasets here, probe sets in ``ability.importers``)."""
    importer = importers.get(fmt.strip().lower())
    if importer is None:
        raise ValueError(f"Unknown {kind} format '{fmt}'; available formats: {', '.join(importers)}.")
    return importer


def per_language_notes(counted: Iterable[tuple[Counter[str], str]]) -> list[str]:
    """``(counts, text)`` -> ``"<text>: de 3, fr 1."`` for every count that is not empty."""
    return [f"{text}: {by_language(counts)}." for counts, text in counted if counts]


def keyed_record(
    raw: Any, index: int, key: str, expected: str, problems: list[str], hint: str = ""
) -> tuple[Any, str] | None:
    """``(raw[key], "record <id> (#<index>)")`` of a record that is an object with ``key``;
    otherwise None, with a problem naming what was ``expected`` (``hint`` follows a missing key)."""
    if not isinstance(raw, dict):
        problems.append(f"record #{index}: expected an object with {expected}, got {type(raw).__name__}")
        return None
    if key not in raw:
        problems.append(f"record #{index}: missing '{key}'{hint}")
        return None
    return raw[key], f"record {raw[key]} (#{index})"


@dataclass
class BlockFallbacks:
    """What every importer of per-language blocks counts: blocks imported, language codes mapped
    to ISO 639-1, blocks skipped and records dropped. Importers add their own counts."""

    blocks: int = 0
    renamed: set[str] = field(default_factory=set)
    skipped_blocks: list[str] = field(default_factory=list)
    dropped_records: list[str] = field(default_factory=list)

    def iso(self, code: str, to_iso: Mapping[str, str]) -> str:
        """``code`` as ISO 639-1 (``to_iso`` lists the dataset's codes that are not), noting a change."""
        iso = to_iso.get(code, code)
        if iso != code:
            self.renamed.add(f"{code}→{iso}")
        return iso

    def around(self, first: list[str], rest: list[str]) -> list[str]:
        """The importer's own notes (``first``, then ``rest``) with the shared ones: codes mapped
        after ``first``, skipped blocks and dropped records last."""
        notes = list(first)
        if self.renamed:
            notes.append(f"Language codes mapped to ISO 639-1: {', '.join(sorted(self.renamed))}.")
        notes += rest
        if self.skipped_blocks:
            notes.append(f"{len(self.skipped_blocks)} unusable language blocks skipped: {sample_ids(self.skipped_blocks)}.")
        if self.dropped_records:
            notes.append(
                f"{len(self.dropped_records)} records dropped (no usable block): {sample_ids(self.dropped_records)}."
            )
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
