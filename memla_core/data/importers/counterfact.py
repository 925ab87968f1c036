"""CounterFact-style English records (ROME, Meng et al. 2022) -> single-language MKEB records.

Input: a JSON list of ``{"case_id", "requested_rewrite": {"prompt", "subject", "target_true": {"str"},
"target_new": {"str"}, "relation_id"?}, "paraphrase_prompts", "neighborhood_prompts",
"generation_prompts"}``. CounterFact prompts already use ``{}`` for the subject.

CounterFact's neighborhood prompts carry no answers of their own: they are other subjects that
share the edited fact's *true* object (e.g. other people whose mother tongue is French), so each
neighborhood answer is the record's ``target_true``. ``generation_prompts`` (for fluency and
consistency tests) and ``attribute_prompts`` (other subjects holding ``target_new``) have no MKEB
counterpart and are not imported.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from ..loader import DatasetError, MKEBDataset
from ._common import keyed_record, read_json_list, string_field, string_list_field, validated

LANGUAGE = "en"


def import_counterfact(path: str | Path) -> MKEBDataset:
    """Read a CounterFact-style JSON file as a validated, English-only MKEBDataset."""
    path = Path(path)
    source = f"CounterFact file {path.name}"
    data = read_json_list(path, source, "CounterFact records ({'case_id', 'requested_rewrite', ...})")
    problems: list[str] = []
    counts: Counter[str] = Counter()
    records = [
        record
        for index, raw in enumerate(data)
        if (record := _convert(raw, index, problems, counts)) is not None
    ]
    if problems:
        raise DatasetError(problems, source=source)
    notes = [
        f"{len(data)} CounterFact records read; {len(records)} imported (English only).",
        f"Neighborhood answers are each record's target_true (CounterFact neighbours share the true "
        f"object): {counts['neighborhood']} prompts.",
    ]
    if counts["no_paraphrase"]:
        notes.append(f"{counts['no_paraphrase']} records without paraphrase prompts.")
    if counts["no_neighborhood"]:
        notes.append(f"{counts['no_neighborhood']} records without neighborhood prompts.")
    if counts["generation"]:
        notes.append(f"{counts['generation']} generation prompts not imported (MKEB has no such field).")
    if counts["attribute"]:
        notes.append(
            f"{counts['attribute']} attribute prompts not imported (other subjects that hold target_new; "
            "MKEB has no such field)."
        )
    return validated(records, f"CounterFact ({path.name})", notes)


def _convert(raw: Any, index: int, problems: list[str], counts: Counter[str]) -> dict | None:
    keyed = keyed_record(raw, index, "case_id", "'case_id' and 'requested_rewrite'", problems)
    if keyed is None:
        return None
    case_id, where = keyed
    start = len(problems)
    rewrite = raw.get("requested_rewrite")
    if not isinstance(rewrite, dict):
        problems.append(
            f"{where}/requested_rewrite: expected an object with prompt, subject, target_true, target_new"
        )
        return None
    at = f"{where}/requested_rewrite"
    prompt = string_field(rewrite, "prompt", at, problems)
    subject = string_field(rewrite, "subject", at, problems)
    targets = {}
    for key in ("target_true", "target_new"):
        target = rewrite.get(key)
        if not isinstance(target, dict):
            problems.append(f"{at}.{key}: expected an object {{'str': ...}}")
            continue
        targets[key] = string_field(target, "str", f"{at}.{key}", problems)
    relation = string_field(rewrite, "relation_id", at, problems, required=False) or ""
    paraphrases = string_list_field(raw, "paraphrase_prompts", where, problems)
    neighbors = string_list_field(raw, "neighborhood_prompts", where, problems)
    generation = string_list_field(raw, "generation_prompts", where, problems)
    attribute = string_list_field(raw, "attribute_prompts", where, problems)
    if prompt is not None and "{}" not in prompt:
        problems.append(f"{at}.prompt: has no '{{}}' for the subject (CounterFact prompts always do)")
    if len(problems) > start:
        return None

    true = (targets["target_true"] or "").strip()
    counts["neighborhood"] += len(neighbors)
    counts["generation"] += len(generation)
    counts["attribute"] += len(attribute)
    counts["no_paraphrase"] += int(not paraphrases)
    counts["no_neighborhood"] += int(not neighbors)
    return {
        "example_id": f"counterfact-{case_id}",
        "relation": relation,
        "relation_description": f"Wikidata {relation}" if relation else "CounterFact relation (not given)",
        "edit": {
            LANGUAGE: {
                "subject": subject,
                "prompt": prompt,
                "target_true": true,
                "target_new": targets["target_new"],
            }
        },
        "paraphrase_prompts": {LANGUAGE: paraphrases},
        "neighborhood_prompts": {LANGUAGE: neighbors},
        "neighborhood_answers": {LANGUAGE: [true] * len(neighbors)},
        "metadata": {"source": "CounterFact", "case_id": case_id},
    }
