"""Reading and writing MKEB files (the authors' JSON layout, docs/method.md §3), with validation.

Records are nested per-language mappings whose language keys vary from record to record;
``datasets`` would flatten them into a fixed struct padded with nulls, so they are parsed here
and ``MKEBDataset.to_hf_dataset`` offers the flat, one-row-per-(fact, language) view instead.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterable, Iterator, Sequence

import pandas as pd

from ..bounds import check_dataset_size
from .schema import EditPrompt, Fact, FactInLanguage, FactNotFoundError, MKEB_LANGUAGES

_LIST_FIELDS = ("paraphrase_prompts", "neighborhood_prompts", "neighborhood_answers", "multi_hop_questions")
PARTIAL_FIELDS = {"paraphrase_prompts": "PS", "multi_hop_questions": "QS"}
"""Lists real multilingual data often has in some languages only (MLaKE's multi-hop questions cover
a third of its records in all five languages): a missing language means no such prompts there, so
its metric is n/a, unless loading is strict."""


class DatasetError(ValueError):
    """A dataset that does not validate; ``problems`` lists every ``record/field: message``."""

    def __init__(self, problems: Sequence[str], source: str = "dataset"):
        self.problems = list(problems)
        shown = "\n  ".join(self.problems[:20])
        more = f"\n  … and {len(self.problems) - 20} more" if len(self.problems) > 20 else ""
        super().__init__(f"{source} has {len(self.problems)} problem(s):\n  {shown}{more}")


@dataclass
class MKEBDataset:
    facts: list[Fact]
    name: str = "dataset"
    notes: list[str] = field(default_factory=list)  # what importers had to fall back on

    def __post_init__(self) -> None:
        self._by_id = {fact.example_id: fact for fact in self.facts}

    def __len__(self) -> int:
        return len(self.facts)

    def __iter__(self) -> Iterator[Fact]:
        return iter(self.facts)

    def get(self, example_id: str | int) -> Fact:
        key = str(example_id)
        if key not in self._by_id:
            sample = ", ".join(list(self._by_id)[:5])
            raise FactNotFoundError(f"No fact with id '{key}' in {self.name} (ids look like: {sample}).")
        return self._by_id[key]

    @property
    def languages(self) -> tuple[str, ...]:
        seen = {code for fact in self.facts for code in fact.languages}
        known = [code for code in MKEB_LANGUAGES if code in seen]
        return tuple(known + sorted(seen - set(known)))

    def stats(self) -> pd.DataFrame:
        """Fact counts per relation (rows) and language (columns)."""
        rows = [
            {"relation": fact.relation or fact.relation_description, "language": code}
            for fact in self.facts
            for code in fact.languages
        ]
        if not rows:
            return pd.DataFrame()
        table = pd.crosstab(pd.DataFrame(rows)["relation"], pd.DataFrame(rows)["language"])
        table = table[[c for c in self.languages if c in table.columns]]
        table.loc["total"] = table.sum()
        return table

    def to_records(self) -> list[dict[str, Any]]:
        return [fact_to_record(fact) for fact in self.facts]

    def save(self, path: str | Path) -> None:
        Path(path).write_text(
            json.dumps(self.to_records(), ensure_ascii=False, indent=1), encoding="utf-8"
        )

    def to_hf_dataset(self):
        """One row per (fact, language), as a ``datasets.Dataset``."""
        import datasets

        rows = []
        for fact in self.facts:
            for code, block in fact.languages.items():
                rows.append(
                    {
                        "example_id": fact.example_id,
                        "relation": fact.relation,
                        "language": code,
                        "subject": block.edit.subject,
                        "prompt": block.edit.prompt,
                        "target_true": block.edit.target_true,
                        "target_new": block.edit.target_new,
                        "paraphrase_prompts": list(block.paraphrase_prompts),
                        "neighborhood_prompts": list(block.neighborhood_prompts),
                        "neighborhood_answers": list(block.neighborhood_answers),
                        "multi_hop_questions": list(block.multi_hop_questions),
                        "multi_hop_new_answer": block.multi_hop_new_answer,
                    }
                )
        return datasets.Dataset.from_list(rows)


def load_mkeb(
    source: str | Path | IO | Iterable[dict], name: str | None = None, strict: bool = False
) -> MKEBDataset:
    """Read and validate an MKEB file (path, file object, or already-parsed records).

    A language missing from ``paraphrase_prompts`` or ``multi_hop_questions`` is accepted as "none
    there" (PS/QS n/a) and counted in ``notes``; ``strict=True`` rejects it instead.
    """
    records, label = _read_records(source)
    problems: list[str] = []
    facts: list[Fact] = []
    seen: Counter[str] = Counter()
    missing: Counter[str] | None = None if strict else Counter()
    for index, record in enumerate(records):
        fact = parse_record(record, index, problems, missing)
        if fact is not None:
            seen[fact.example_id] += 1
            if seen[fact.example_id] == 2:
                problems.append(f"record {fact.example_id}/example_id: id used by more than one record")
            facts.append(fact)
    if not records:
        problems.append("the file holds no records")
    if problems:
        raise DatasetError(problems, source=name or label)
    notes = [
        f"{field} missing in {count} (record, language) pair(s): {PARTIAL_FIELDS[field]} is n/a there "
        "(load strictly to reject such files)"
        for field, count in sorted((missing or {}).items())
    ]
    return MKEBDataset(facts, name=name or label, notes=notes)


def _read_records(source) -> tuple[list, str]:
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise DatasetError([f"file not found: {path}"], source=str(path))
        check_dataset_size(path.stat().st_size, str(path))
        text, label = _decode(path.read_bytes(), str(path)), path.name
    elif hasattr(source, "read"):
        label = getattr(source, "name", "uploaded file")
        raw = source.read()
        check_dataset_size(len(raw), label)
        text = _decode(raw, label) if isinstance(raw, bytes) else raw
    else:
        return list(source), "records"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise DatasetError([f"not valid JSON: {err}"], source=label) from None
    if isinstance(data, dict) and "facts" in data:
        data = data["facts"]
    if not isinstance(data, list):
        raise DatasetError(["expected a JSON list of records"], source=label)
    return data, label


def _decode(raw: bytes, label: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DatasetError(
            [f"not UTF-8 text (byte {err.start}: {raw[err.start:err.start + 1]!r}); save the file as UTF-8"], source=label
        ) from None


def parse_record(
    record: Any, index: int, problems: list[str], missing: Counter[str] | None = None
) -> Fact | None:
    """One raw record -> Fact, appending every problem found (``record <id>/<field>: ...``).
    ``missing`` counts languages absent from ``PARTIAL_FIELDS`` (``None``: reject them)."""
    if not isinstance(record, dict):
        problems.append(f"record #{index}: expected an object, got {type(record).__name__}")
        return None
    rid = str(record.get("example_id", record.get("case_id", f"#{index}")))
    where = f"record {rid}"
    start = len(problems)
    if "example_id" not in record:
        problems.append(f"{where}/example_id: missing")
    edits = record.get("edit")
    if not isinstance(edits, dict) or not edits:
        problems.append(f"{where}/edit: missing or empty (needs one entry per language)")
        return None
    languages: dict[str, FactInLanguage] = {}
    for code, raw in edits.items():
        edit = _parse_edit(raw, f"{where}/edit.{code}", problems)
        lists = {}
        for name in _LIST_FIELDS:
            lists[name] = _string_list(record, name, code, where, problems, missing)
        if len(lists["neighborhood_prompts"]) != len(lists["neighborhood_answers"]):
            problems.append(
                f"{where}/neighborhood_answers.{code}: {len(lists['neighborhood_answers'])} answers "
                f"for {len(lists['neighborhood_prompts'])} neighborhood prompts"
            )
        hop_answer = (record.get("multi_hop_new_answer") or {}).get(code)
        if lists["multi_hop_questions"] and not (isinstance(hop_answer, str) and hop_answer.strip()):
            problems.append(f"{where}/multi_hop_new_answer.{code}: missing for its multi-hop questions")
        if edit is not None:
            languages[code] = FactInLanguage(
                edit=edit,
                paraphrase_prompts=tuple(lists["paraphrase_prompts"]),
                neighborhood_prompts=tuple(lists["neighborhood_prompts"]),
                neighborhood_answers=tuple(a.strip() for a in lists["neighborhood_answers"]),
                multi_hop_questions=tuple(lists["multi_hop_questions"]),
                multi_hop_new_answer=hop_answer.strip() if isinstance(hop_answer, str) else None,
            )
    for name in (*_LIST_FIELDS, "multi_hop_new_answer"):
        extra = set(record.get(name) or {}) - set(edits) if isinstance(record.get(name), dict) else set()
        for code in sorted(extra):
            problems.append(f"{where}/{name}.{code}: language has no edit entry")
    if len(problems) > start:
        return None
    return Fact(
        example_id=rid,
        relation_description=str(record.get("relation_description", "")),
        relation=str(record.get("relation", "")),
        languages=languages,
        metadata=dict(record.get("metadata") or {}),
    )


def _parse_edit(raw: Any, where: str, problems: list[str]) -> EditPrompt | None:
    if not isinstance(raw, dict):
        problems.append(f"{where}: expected an object with subject, prompt, target_true, target_new")
        return None
    start = len(problems)
    values = {}
    for key in ("subject", "prompt", "target_new"):
        value = raw.get(key)
        if not isinstance(value, str) or not value.strip():
            problems.append(f"{where}.{key}: missing or empty")
        values[key] = value.strip() if isinstance(value, str) else ""
    true = raw.get("target_true")
    if isinstance(true, dict):  # CounterFact style {"str": ...}
        true = true.get("str")
    if true is not None and (not isinstance(true, str) or not true.strip()):
        problems.append(f"{where}.target_true: empty (leave it out or null when unknown)")
        true = None
    true = true.strip() if isinstance(true, str) else None
    prompt = values["prompt"]
    if prompt.count("{}") > 1:
        problems.append(f"{where}.prompt: '{{}}' appears {prompt.count('{}')} times; use it once for the subject")
    if true is not None and values["target_new"] and true == values["target_new"]:
        problems.append(f"{where}.target_new: equals target_true ('{true}')")
    if len(problems) > start:
        return None
    return EditPrompt(values["subject"], values["prompt"], values["target_new"], true)


def _string_list(
    record: dict, name: str, code: str, where: str, problems: list[str], missing: Counter[str] | None = None
) -> list[str]:
    block = record.get(name)
    if block is None:
        return []
    if not isinstance(block, dict):
        problems.append(f"{where}/{name}: expected an object keyed by language")
        return []
    if code not in block:
        if missing is not None and name in PARTIAL_FIELDS:
            missing[name] += 1
            return []
        problems.append(f"{where}/{name}.{code}: missing language '{code}' (the edit has it); give [] when there are none")
        return []
    values = block[code]
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list) or not all(isinstance(v, str) and v.strip() for v in values):
        problems.append(f"{where}/{name}.{code}: expected a list of non-empty strings")
        return []
    return [v.strip() for v in values]


def fact_to_record(fact: Fact) -> dict[str, Any]:
    """A Fact back in the canonical JSON layout."""
    codes = fact.language_codes
    blocks = {code: fact.languages[code] for code in codes}
    record: dict[str, Any] = {
        "example_id": fact.example_id,
        "relation": fact.relation,
        "relation_description": fact.relation_description,
        "edit": {
            code: {
                "subject": b.edit.subject,
                "prompt": b.edit.prompt,
                "target_true": b.edit.target_true,
                "target_new": b.edit.target_new,
            }
            for code, b in blocks.items()
        },
    }
    for name in _LIST_FIELDS:
        values = {code: list(getattr(b, name)) for code, b in blocks.items()}
        if any(values.values()):
            record[name] = values
    answers = {code: b.multi_hop_new_answer for code, b in blocks.items() if b.multi_hop_new_answer}
    if answers:
        record["multi_hop_new_answer"] = answers
    if fact.metadata:
        record["metadata"] = dict(fact.metadata)
    return record


def dumps(dataset: MKEBDataset) -> str:
    buffer = io.StringIO()
    json.dump(dataset.to_records(), buffer, ensure_ascii=False, indent=1)
    return buffer.getvalue()
