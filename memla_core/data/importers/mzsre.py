"""MzsRE (the 12-language zsRE test set of ReMaKE, Wang et al. 2023) -> MKEB.

Input: a JSON list of ``{"id": i, "<lang>": {"subject", "src", "rephrase", "alt", "loc", "loc_ans",
"portability": {"New Question", "New Answer"}}, ...}`` (``shared/data/mzsre/README.md``).
MzsRE asks questions, has no pre-edit answer and no ``{}`` templates, so the edit prompt is the
question itself and ``target_true`` stays unknown; every other fallback is counted in ``notes``.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..loader import DatasetError, MKEBDataset
from ._common import (
    BlockFallbacks,
    keyed_record,
    per_language_notes,
    read_json_list,
    sample_ids,
    string_field,
    validated,
)

MZSRE_TO_ISO: dict[str, str] = {"cz": "cs", "du": "nl"}
"""MzsRE's own language codes that are not ISO 639-1; every other code is kept."""

NQ_PREFIX = "nq question: "
BUDDHIST_ERA_OFFSET = 543
RELATION_DESCRIPTION = "zsRE question (MzsRE gives no relation label)"

_FIELDS = ("subject", "src", "rephrase", "alt", "loc", "loc_ans")
# A Thai year, bare ("2549") or with the Buddhist-era abbreviation ("พ.ศ. 2549").
_THAI_YEAR = re.compile(r"(?:พ\.ศ\.\s*)?(\d{4})")


@dataclass
class _Fallbacks(BlockFallbacks):
    """What the import had to work around, per language (ISO codes)."""

    subject_not_in_src: Counter[str] = field(default_factory=Counter)
    rephrase_is_src: Counter[str] = field(default_factory=Counter)
    rephrase_empty: Counter[str] = field(default_factory=Counter)
    nq_prefix: Counter[str] = field(default_factory=Counter)
    no_neighborhood: Counter[str] = field(default_factory=Counter)
    no_multi_hop: Counter[str] = field(default_factory=Counter)
    stripped: Counter[str] = field(default_factory=Counter)
    thai_years: list[str] = field(default_factory=list)
    thai_years_with_era: int = 0

    def notes(self, read: int, imported: int) -> list[str]:
        first = [
            f"{read} MzsRE records read; {imported} imported with {self.blocks} language blocks.",
            "target_true is unknown (None) everywhere: MzsRE has no pre-edit answer.",
            "Edit prompts are MzsRE's questions ('src') as they are, without '{}'.",
        ]
        rest = per_language_notes([
            (
                self.subject_not_in_src,
                "Subject not verbatim in the question (question kept as is; see metadata subject_in_prompt)",
            ),
            (self.rephrase_is_src, "'rephrase' identical to 'src', so no paraphrase"),
            (self.rephrase_empty, "'rephrase' empty, so no paraphrase"),
            (self.nq_prefix, f"'{NQ_PREFIX.strip()}' prefix stripped from 'loc'"),
        ])
        if self.thai_years:
            era = f" ({self.thai_years_with_era} written with 'พ.ศ.')" if self.thai_years_with_era else ""
            rest.append(
                f"th: {len(self.thai_years)} Buddhist-era years in 'alt'{era} converted back to the en "
                f"(Gregorian) year, records {sample_ids(self.thai_years)}."
            )
        rest += per_language_notes([
            (self.stripped, "Answers with leading/trailing spaces stripped"),
            (self.no_neighborhood, "Empty 'loc' or 'loc_ans', so no neighborhood prompt"),
            (self.no_multi_hop, "No usable 'portability' question, so no multi-hop"),
        ])
        return self.around(first, rest)


def import_mzsre(path: str | Path) -> MKEBDataset:
    """Read an MzsRE JSON file (e.g. ``mzsre_test_12lang.json``) as a validated MKEBDataset."""
    path = Path(path)
    source = f"MzsRE file {path.name}"
    data = read_json_list(path, source, "MzsRE records ({'id': ..., '<lang>': {...}})")
    problems: list[str] = []
    fallbacks = _Fallbacks()
    records = []
    for index, raw in enumerate(data):
        record = _convert(raw, index, problems, fallbacks)
        if record is not None:
            records.append(record)
    if problems:
        raise DatasetError(problems, source=source)
    return validated(records, f"MzsRE ({path.name})", fallbacks.notes(len(data), len(records)))


def _convert(raw: Any, index: int, problems: list[str], fallbacks: _Fallbacks) -> dict | None:
    keyed = keyed_record(
        raw, index, "id", "'id' and one block per language", problems,
        hint=" (MzsRE records look like {'id': 0, 'en': {...}})",
    )
    if keyed is None:
        return None
    rid, where = keyed
    blocks = _typed_blocks(raw, where, problems, fallbacks)
    if blocks is None:
        return None

    en_alt = blocks["en"]["alt"].strip() if "en" in blocks else ""
    record: dict[str, Any] = {
        "example_id": f"mzsre-{rid}",
        "relation_description": RELATION_DESCRIPTION,
        "edit": {},
        "paraphrase_prompts": {},
        "neighborhood_prompts": {},
        "neighborhood_answers": {},
        "multi_hop_questions": {},
        "multi_hop_new_answer": {},
        "metadata": {"source": "MzsRE", "mzsre_id": rid, "subject_in_prompt": {}},
    }
    for code, values in blocks.items():
        for key in ("alt", "loc_ans", "New Answer"):
            if values[key] != values[key].strip():
                fallbacks.stripped[f"{code} {key}"] += 1
        values = {key: value.strip() for key, value in values.items()}
        empty = [key for key in ("subject", "src", "alt") if not values[key]]
        if empty:
            fallbacks.skipped_blocks.append(f"{rid}/{code} (empty {', '.join(empty)})")
            continue
        if code == "th" and en_alt:
            values["alt"] = _gregorian_year(values["alt"], en_alt, rid, fallbacks)
        _add_block(record, code, values, fallbacks)

    if not record["edit"]:
        fallbacks.dropped_records.append(str(rid))
        return None
    return record


def _typed_blocks(
    raw: dict, where: str, problems: list[str], fallbacks: _Fallbacks
) -> dict[str, dict[str, str]] | None:
    """Language blocks keyed by ISO code, every field a string ('' when absent), or None on a problem."""
    start = len(problems)
    blocks: dict[str, dict[str, str]] = {}
    for code, block in raw.items():
        if code == "id":
            continue
        at = f"{where}/{code}"
        if not isinstance(block, dict):
            problems.append(f"{at}: expected an object with {', '.join(_FIELDS)}, got {type(block).__name__}")
            continue
        values = {key: string_field(block, key, at, problems) or "" for key in _FIELDS}
        hop = block.get("portability")
        if hop is not None and not isinstance(hop, dict):
            problems.append(f"{at}.portability: expected an object with 'New Question' and 'New Answer'")
            hop = None
        for key in ("New Question", "New Answer"):
            values[key] = string_field(hop or {}, key, f"{at}.portability", problems, required=False) or ""
        iso = fallbacks.iso(code, MZSRE_TO_ISO)
        if iso in blocks:
            problems.append(f"{at}: a second block for language '{iso}'")
        blocks[iso] = values
    if not blocks:
        problems.append(f"{where}: no language blocks")
    return blocks if len(problems) == start else None


def _gregorian_year(thai_alt: str, en_alt: str, rid: object, fallbacks: _Fallbacks) -> str:
    """The en year when the Thai answer is that year in the Buddhist era (+543), else the answer as is.

    The edit must install the same target in every language; a Thai "2549" for an English "2006"
    would make cross-lingual scores compare two different answers.
    """
    match = _THAI_YEAR.fullmatch(thai_alt)
    if match and re.fullmatch(r"\d{4}", en_alt) and int(match.group(1)) == int(en_alt) + BUDDHIST_ERA_OFFSET:
        fallbacks.thai_years.append(str(rid))
        fallbacks.thai_years_with_era += int(thai_alt != match.group(1))
        return en_alt
    return thai_alt


def _add_block(record: dict[str, Any], code: str, values: dict[str, str], fallbacks: _Fallbacks) -> None:
    fallbacks.blocks += 1
    src = values["src"]
    subject_in_src = values["subject"] in src
    if not subject_in_src:
        fallbacks.subject_not_in_src[code] += 1
    record["metadata"]["subject_in_prompt"][code] = subject_in_src
    record["edit"][code] = {
        "subject": values["subject"],
        "prompt": src,
        "target_true": None,
        "target_new": values["alt"],
    }

    paraphrases = [values["rephrase"]]
    if not values["rephrase"]:
        fallbacks.rephrase_empty[code] += 1
        paraphrases = []
    elif values["rephrase"] == src:
        fallbacks.rephrase_is_src[code] += 1
        paraphrases = []
    record["paraphrase_prompts"][code] = paraphrases

    loc = values["loc"]
    if loc.startswith(NQ_PREFIX):
        fallbacks.nq_prefix[code] += 1
        loc = loc[len(NQ_PREFIX):].strip()
    has_neighbor = bool(loc and values["loc_ans"])
    if not has_neighbor:
        fallbacks.no_neighborhood[code] += 1
    record["neighborhood_prompts"][code] = [loc] if has_neighbor else []
    record["neighborhood_answers"][code] = [values["loc_ans"]] if has_neighbor else []

    if values["New Question"] and values["New Answer"]:
        record["multi_hop_questions"][code] = [values["New Question"]]
        record["multi_hop_new_answer"][code] = values["New Answer"]
    else:
        fallbacks.no_multi_hop[code] += 1
        record["multi_hop_questions"][code] = []
