"""MLaKE (Wei et al. 2024, 5 languages, free-form QA) -> MKEB.

Input: the MLaKE dataset folder, holding ``single_hop/<lang>_qa.json`` (lists of ``{"question",
"o_prompt", "o_answer", "o_answer_aliases", "e_prompt", "e_answer", "e_answer_aliases"}``) and
optionally ``multi_hop/new_<lang>_qa.json`` (lists of ``{"question", "e_prompt", "e_answer",
"e_answer_aliases"}``). The upstream repository's ``qa/`` subfolders and ``dataset/`` root are
found too. Single-hop files are aligned across languages by position.

Choices, each counted in ``notes``:
- MLaKE has no subject and no cloze template: the question is both the edit prompt (no ``{}``)
  and the subject (the loader needs a non-empty subject; a prompt without ``{}`` never uses it).
- No paraphrases: ``o_prompt``/``e_prompt`` are statements that already contain the answer, so
  they cannot be prompts; no neighborhood prompts either (MLaKE has no locality data).
- A multi-hop question belongs to the single-hop edit whose ``e_prompt`` it repeats, looked up in
  its own language, then in English (upstream multi-hop files of every language quote the
  English ``e_prompt``). MKEB keeps one answer per fact and language, so further questions of the
  same edit are kept only when they share the first one's answer.
- ``old_<lang>_qa.json`` (pre-edit multi-hop answers) has no MKEB field and is not read.
- Answer aliases are kept in ``metadata["aliases"]``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..loader import DatasetError, MKEBDataset
from ._common import (
    BlockFallbacks,
    per_language_notes,
    read_json_list,
    string_field,
    string_list_field,
    validated,
)

MLAKE_TO_ISO: dict[str, str] = {"jp": "ja"}
"""MLaKE file-name codes that are not ISO 639-1; every other code is kept."""

RELATION_DESCRIPTION = "MLaKE single-hop question (MLaKE gives no relation label)"
_SUFFIX = "_qa.json"


@dataclass
class _Fallbacks(BlockFallbacks):
    no_true: Counter[str] = field(default_factory=Counter)
    hop_questions: Counter[str] = field(default_factory=Counter)
    hop_english_match: Counter[str] = field(default_factory=Counter)
    hop_unmatched: Counter[str] = field(default_factory=Counter)
    hop_other_answer: Counter[str] = field(default_factory=Counter)
    hop_empty: Counter[str] = field(default_factory=Counter)
    hop_orphan_files: list[str] = field(default_factory=list)

    def notes(self, read: int, imported: int) -> list[str]:
        first = [
            f"{read} MLaKE single-hop records per language read; {imported} imported with "
            f"{self.blocks} language blocks.",
            f"Subject unknown in MLaKE: the question is used as edit prompt (no '{{}}') and as subject "
            f"in all {self.blocks} blocks.",
            "No paraphrase or neighborhood prompts: MLaKE's o_prompt/e_prompt are statements that contain "
            "the answer, and MLaKE has no locality data.",
        ]
        rest = per_language_notes([
            (self.no_true, "Empty o_answer, so target_true unknown"),
            (self.hop_questions, "Multi-hop questions kept"),
            (self.hop_english_match, "Multi-hop questions matched to their edit through the English e_prompt"),
            (self.hop_unmatched, "Multi-hop questions whose e_prompt names no single-hop edit, dropped"),
            (
                self.hop_other_answer,
                "Multi-hop questions dropped because an earlier question of the same edit has another answer "
                "(MKEB keeps one)",
            ),
            (self.hop_empty, "Multi-hop questions with an empty question or answer, dropped"),
        ])
        if self.hop_orphan_files:
            rest.append(f"Ignored (no single-hop file of that language): {', '.join(self.hop_orphan_files)}.")
        return self.around(first, rest)


def import_mlake(path: str | Path) -> MKEBDataset:
    """Read an MLaKE dataset folder as a validated MKEBDataset."""
    root = _dataset_root(Path(path))
    source = f"MLaKE folder {root}"
    fallbacks = _Fallbacks()
    problems: list[str] = []
    parsed: dict[str, list[dict[str, Any] | None]] = {}
    for file in _qa_files(root / "single_hop", prefix=""):
        iso = fallbacks.iso(file.name[: -len(_SUFFIX)], MLAKE_TO_ISO)
        rows = read_json_list(file, source, "single-hop questions")
        parsed[iso] = [
            _single_hop(row, f"single_hop/{file.name} record #{i}", problems) for i, row in enumerate(rows)
        ]
    if problems:
        raise DatasetError(problems, source=source)
    single = {iso: [row for row in rows if row is not None] for iso, rows in parsed.items()}
    lengths = {iso: len(rows) for iso, rows in single.items()}
    if len(set(lengths.values())) > 1:
        counts = ", ".join(f"{iso} {n}" for iso, n in lengths.items())
        raise DatasetError(
            [f"single-hop files differ in length ({counts}); records are aligned across languages by "
             "position, so every single_hop/<lang>_qa.json must hold the same facts in the same order"],
            source=source,
        )

    hops: dict[str, dict[int, tuple[list[str], str]]] = {}
    for file in _qa_files(root / "multi_hop", prefix="new_", required=False):
        iso = fallbacks.iso(file.name[len("new_"): -len(_SUFFIX)], MLAKE_TO_ISO)
        if iso not in single:
            fallbacks.hop_orphan_files.append(file.name)
            continue
        hops[iso] = _multi_hop(file, iso, single, source, problems, fallbacks)
    if problems:
        raise DatasetError(problems, source=source)

    size = next(iter(lengths.values()))
    records = [
        record
        for index in range(size)
        if (record := _record(index, single, hops, fallbacks)) is not None
    ]
    return validated(records, f"MLaKE ({root.name})", fallbacks.notes(size, len(records)))


def _dataset_root(path: Path) -> Path:
    for candidate in (path, path / "dataset"):
        if (candidate / "single_hop").is_dir():
            return candidate
    raise DatasetError(
        [f"no single_hop/ folder in {path} (or {path / 'dataset'}); pass the MLaKE dataset folder that "
         "holds single_hop/<lang>_qa.json and, optionally, multi_hop/new_<lang>_qa.json"],
        source=f"MLaKE folder {path}",
    )


def _qa_files(folder: Path, prefix: str, required: bool = True) -> list[Path]:
    """``<prefix><lang>_qa.json`` files of ``folder`` or of its upstream ``qa/`` subfolder."""
    for candidate in (folder, folder / "qa"):
        files = sorted(candidate.glob(f"{prefix}*{_SUFFIX}")) if candidate.is_dir() else []
        if files:
            return files
    if required:
        raise DatasetError(
            [f"no <lang>{_SUFFIX} files in {folder} or {folder / 'qa'} (expected e.g. en{_SUFFIX})"],
            source=f"MLaKE folder {folder.parent}",
        )
    return []


def _single_hop(row: Any, where: str, problems: list[str]) -> dict[str, Any] | None:
    if not isinstance(row, dict):
        problems.append(f"{where}: expected an object with question, o_answer, e_answer, got {type(row).__name__}")
        return None
    start = len(problems)
    values: dict[str, Any] = {
        key: string_field(row, key, where, problems) for key in ("question", "o_answer", "e_answer")
    }
    values["e_prompt"] = string_field(row, "e_prompt", where, problems, required=False) or ""
    string_field(row, "o_prompt", where, problems, required=False)
    for key in ("o_answer_aliases", "e_answer_aliases"):
        values[key] = [alias.strip() for alias in string_list_field(row, key, where, problems) if alias.strip()]
    if len(problems) > start:
        return None
    return {key: value.strip() if isinstance(value, str) else value for key, value in values.items()}


def _by_e_prompt(rows: list[dict[str, Any]]) -> dict[str, int]:
    index: dict[str, int] = {}
    for position, row in enumerate(rows):
        if row["e_prompt"]:
            index.setdefault(row["e_prompt"], position)
    return index


def _multi_hop(
    file: Path,
    iso: str,
    single: dict[str, list[dict[str, Any]]],
    source: str,
    problems: list[str],
    fallbacks: _Fallbacks,
) -> dict[int, tuple[list[str], str]]:
    """Position of the single-hop edit -> (questions, their shared new answer)."""
    own = _by_e_prompt(single[iso])
    english = _by_e_prompt(single.get("en", []))
    found: dict[int, tuple[list[str], str]] = {}
    for number, row in enumerate(read_json_list(file, source, "multi-hop questions")):
        where = f"multi_hop/{file.name} record #{number}"
        if not isinstance(row, dict):
            problems.append(
                f"{where}: expected an object with question, e_prompt, e_answer, got {type(row).__name__}"
            )
            continue
        start = len(problems)
        question, e_prompt, answer = (
            string_field(row, key, where, problems) for key in ("question", "e_prompt", "e_answer")
        )
        if len(problems) > start or question is None or e_prompt is None or answer is None:
            continue
        question, e_prompt, answer = question.strip(), e_prompt.strip(), answer.strip()
        if not question or not answer:
            fallbacks.hop_empty[iso] += 1
            continue
        if e_prompt in own:
            position = own[e_prompt]
        elif e_prompt in english:
            position = english[e_prompt]
            fallbacks.hop_english_match[iso] += 1
        else:
            fallbacks.hop_unmatched[iso] += 1
            continue
        questions, first_answer = found.setdefault(position, ([], answer))
        if answer != first_answer:
            fallbacks.hop_other_answer[iso] += 1
            continue
        questions.append(question)
    return found


def _record(
    index: int,
    single: dict[str, list[dict[str, Any]]],
    hops: dict[str, dict[int, tuple[list[str], str]]],
    fallbacks: _Fallbacks,
) -> dict[str, Any] | None:
    record: dict[str, Any] = {
        "example_id": f"mlake-{index}",
        "relation_description": RELATION_DESCRIPTION,
        "edit": {},
        "multi_hop_questions": {},
        "multi_hop_new_answer": {},
        "metadata": {"source": "MLaKE", "mlake_index": index, "aliases": {}},
    }
    for iso, rows in single.items():
        row = rows[index]
        empty = [key for key in ("question", "e_answer") if not row[key]]
        if empty:
            fallbacks.skipped_blocks.append(f"{index}/{iso} (empty {', '.join(empty)})")
            continue
        if row["o_answer"] == row["e_answer"]:
            fallbacks.skipped_blocks.append(f"{index}/{iso} (o_answer equals e_answer)")
            continue
        if not row["o_answer"]:
            fallbacks.no_true[iso] += 1
        fallbacks.blocks += 1
        record["edit"][iso] = {
            "subject": row["question"],
            "prompt": row["question"],
            "target_true": row["o_answer"] or None,
            "target_new": row["e_answer"],
        }
        questions, answer = hops.get(iso, {}).get(index, ([], ""))
        record["multi_hop_questions"][iso] = questions
        if questions:
            record["multi_hop_new_answer"][iso] = answer
            fallbacks.hop_questions[iso] += len(questions)
        aliases = {"target_true": row["o_answer_aliases"], "target_new": row["e_answer_aliases"]}
        if any(aliases.values()):
            record["metadata"]["aliases"][iso] = aliases
    if not record["edit"]:
        fallbacks.dropped_records.append(str(index))
        return None
    if not record["metadata"]["aliases"]:
        del record["metadata"]["aliases"]
    return record
