"""Public general-ability sets a user has on disk -> probe items, prompted like the bundled probe.

- **PIQA** (Bisk et al. 2020): JSONL lines ``{"goal", "sol1", "sol2"}`` and a labels file with
  one ``0``/``1`` per line (``train-labels.lst`` next to ``train.jsonl``; found by name when not
  given), or a ``label`` field in each line (the Hugging Face export). English.
- **ANLI** (Nie et al. 2020): JSONL lines ``{"uid", "context" (or "premise"), "hypothesis",
  "label"}`` with ``e``/``n``/``c`` (or 0/1/2, the Hugging Face order). English.
- **XNLI** (Conneau et al. 2018): the TSV release, a header row with at least ``language``,
  ``gold_label``, ``sentence1``, ``sentence2`` (``pairID`` keys the item across languages).

NLI becomes two-way as in the bundled probe: entailment against the rest (neutral and
contradiction are both "does not follow"). Every importer validates everything, raises one
``DatasetError`` listing each ``record/field: problem``, and lists what it mapped or skipped in
``ProbeSet.notes`` (the fact importers' conventions, ``data.importers``).
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from ..data.importers._common import importer_for, per_language_notes
from ..data.loader import DatasetError
from .items import NLI_LABELS, ProbeItem, ProbeSet, Templates, load_templates

_ANLI_LABELS = {"e": 0, "n": 1, "c": 2, 0: 0, 1: 1, 2: 2, "entailment": 0, "neutral": 1, "contradiction": 2}
_THREE_WAY = ("entailment", "neutral", "contradiction")


def _jsonl(path: Path, source: str) -> list[tuple[int, Any]]:
    """(line number, parsed object) of every non-blank line; bad lines are listed together."""
    if not path.is_file():
        raise DatasetError([f"file not found: {path}"], source=source)
    rows, problems = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append((number, json.loads(line)))
        except json.JSONDecodeError as err:
            problems.append(f"line {number}: not valid JSON ({err.msg})")
    if problems:
        raise DatasetError(problems, source=source)
    return rows


def _string(raw: dict, keys: tuple[str, ...], where: str, problems: list[str]) -> str | None:
    key = next((k for k in keys if k in raw), keys[0])
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip():
        problems.append(f"{where}/{key}: {'missing' if value is None else 'empty' if isinstance(value, str) else 'expected a string'}")
        return None
    return value.strip()


def _nli_item(item_id: str, lang: str, premise: str, hypothesis: str, answer: int, templates: Templates) -> ProbeItem:
    prompt = templates.nli[lang].format(premise=premise, hypothesis=hypothesis)
    return ProbeItem("nli", item_id, lang, prompt, tuple(templates.nli_choices[lang]), answer)


def _finish(items: list[ProbeItem], problems: list[str], source: str, name: str, notes: list[str]) -> ProbeSet:
    if problems:
        raise DatasetError(problems, source=source)
    if not items:
        raise DatasetError(["no usable record was found", *notes], source=source)
    return ProbeSet(tuple(items), name=name, notes=tuple(notes))


def import_piqa(path: str | Path, labels: str | Path | None = None) -> ProbeSet:
    """PIQA JSONL (+ labels) as English ``physical`` items."""
    path = Path(path)
    source = f"PIQA file {path.name}"
    rows = _jsonl(path, source)
    label_path = Path(labels) if labels is not None else path.with_name(f"{path.stem}-labels.lst")
    given: list[str] | None = None
    if labels is not None or label_path.is_file():
        if not label_path.is_file():
            raise DatasetError([f"labels file not found: {label_path}"], source=source)
        given = [line.strip() for line in label_path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if len(given) != len(rows):
            raise DatasetError([f"{label_path.name} has {len(given)} labels for {len(rows)} records; they must match line by line"],
                               source=source)
    templates = load_templates()
    items, problems = [], []
    for index, (number, raw) in enumerate(rows):
        where = f"line {number}"
        if not isinstance(raw, dict):
            problems.append(f"{where}: expected an object with goal, sol1, sol2")
            continue
        goal = _string(raw, ("goal",), where, problems)
        first = _string(raw, ("sol1",), where, problems)
        second = _string(raw, ("sol2",), where, problems)
        label = given[index] if given is not None else raw.get("label")
        if str(label) not in ("0", "1"):
            field = f"{label_path.name} line {index + 1}" if given is not None else f"{where}/label"
            problems.append(f"{field}: expected 0 or 1, got {label!r}" if label is not None or given is not None else
                            f"{where}/label: missing, and no labels file {label_path.name} next to {path.name}")
            continue
        if goal is None or first is None or second is None:
            continue
        if first.casefold() == second.casefold():
            problems.append(f"{where}/sol2: same as sol1")
            continue
        prompt = templates.physical["en"].format(goal=goal)
        items.append(ProbeItem("physical", f"piqa-{index}", "en", prompt, (first, second), int(label)))
    notes = [f"{len(rows)} PIQA records read; {len(items)} imported as English two-choice items."]
    return _finish(items, problems, source, f"PIQA ({path.name})", notes)


def import_anli(path: str | Path) -> ProbeSet:
    """ANLI JSONL as English two-way ``nli`` items (neutral and contradiction: not entailed)."""
    path = Path(path)
    source = f"ANLI file {path.name}"
    rows = _jsonl(path, source)
    templates = load_templates()
    items, problems, three_way = [], [], Counter()
    for index, (number, raw) in enumerate(rows):
        if not isinstance(raw, dict):
            problems.append(f"line {number}: expected an object with context, hypothesis, label")
            continue
        where = f"line {number} (uid {raw.get('uid', index)})"
        premise = _string(raw, ("context", "premise"), where, problems)
        hypothesis = _string(raw, ("hypothesis",), where, problems)
        label = _ANLI_LABELS.get(raw.get("label"))
        if label is None:
            problems.append(f"{where}/label: expected e, n or c (or 0, 1, 2), got {raw.get('label')!r}")
            continue
        if premise is None or hypothesis is None:
            continue
        three_way[_THREE_WAY[label]] += 1
        items.append(_nli_item(f"anli-{raw.get('uid', index)}", "en", premise, hypothesis, int(label != 0), templates))
    notes = [f"{len(rows)} ANLI records read; {len(items)} imported as English two-way NLI items.",
             "Labels mapped to two-way: " + ", ".join(f"{k} {three_way[k]}" for k in _THREE_WAY)
             + f" -> {NLI_LABELS[0]} {three_way['entailment']}, {NLI_LABELS[1]} {three_way['neutral'] + three_way['contradiction']}."]
    return _finish(items, problems, source, f"ANLI ({path.name})", notes)


def import_xnli(path: str | Path) -> ProbeSet:
    """The XNLI TSV as two-way ``nli`` items in every language that has a bundled template."""
    path = Path(path)
    source = f"XNLI file {path.name}"
    if not path.is_file():
        raise DatasetError([f"file not found: {path}"], source=source)
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        columns = set(reader.fieldnames or ())
        required = {"language", "gold_label", "sentence1", "sentence2"}
        if not required <= columns:
            raise DatasetError([f"header: missing column(s) {', '.join(sorted(required - columns))} "
                                f"(found {', '.join(reader.fieldnames or ()) or 'none'})"], source=source)
        rows = list(reader)
    templates = load_templates()
    items, problems, skipped, three_way = [], [], Counter(), Counter()
    for index, raw in enumerate(rows):
        number = index + 2  # the header is line 1
        lang = (raw.get("language") or "").strip()
        item_id = (raw.get("pairID") or "").strip() or str(index)
        where = f"line {number} ({lang or '?'} pair {item_id})"
        gold = (raw.get("gold_label") or "").strip()
        if gold not in _THREE_WAY:
            problems.append(f"{where}/gold_label: expected entailment, neutral or contradiction, got {gold!r}")
            continue
        premise = _string(raw, ("sentence1",), where, problems)
        hypothesis = _string(raw, ("sentence2",), where, problems)
        if premise is None or hypothesis is None:
            continue
        if lang not in templates.nli:
            skipped[lang or "?"] += 1
            continue
        three_way[gold] += 1
        items.append(_nli_item(f"xnli-{item_id}", lang, premise, hypothesis, int(gold != "entailment"), templates))
    notes = [f"{len(rows)} XNLI rows read; {len(items)} imported as two-way NLI items in "
             f"{', '.join(sorted({i.language for i in items})) or 'no language'}.",
             "Labels mapped to two-way: " + ", ".join(f"{k} {three_way[k]}" for k in _THREE_WAY) + "."]
    notes += per_language_notes([(skipped, "Rows in languages without a memla template skipped")])
    return _finish(items, problems, source, f"XNLI ({path.name})", notes)


IMPORTERS: dict[str, Callable[[str | Path], ProbeSet]] = {
    "piqa": import_piqa,
    "anli": import_anli,
    "xnli": import_xnli,
}
"""Format name -> importer taking the file (PIQA finds its ``-labels.lst`` next to it)."""


def import_probe(fmt: str, path: str | Path) -> ProbeSet:
    """Import ``path`` in format ``fmt`` (a key of ``IMPORTERS``, case-insensitive)."""
    return importer_for(IMPORTERS, fmt, "probe")(path)
