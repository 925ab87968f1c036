"""Checks every record of the bundled MKEB dataset (assets/mkeb_bundled.json; assets/DATASHEET.md).

Per-fact tests are parametrised by example_id and report ``<example_id>/<lang>/<field>: problem``
lines, so a failure names the record and field to fix. Run this file as a script to print the
counts table of the datasheet: ``python tests/test_bundled_dataset.py``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterator

import pytest
from script_checks import NON_LATIN_SCRIPTS, assert_no_problems, foreign_letters

from memla_core.data import BUNDLED_DATASET_PATH, MKEB_LANGUAGES, Fact, MKEBDataset, load_bundled

DATASHEET = BUNDLED_DATASET_PATH.parent / "DATASHEET.md"
TABLE_START, TABLE_END = "<!-- counts:start -->", "<!-- counts:end -->"

MIN_FACTS, MIN_RELATIONS, MIN_MULTI_HOP = 60, 10, 20
N_PARAPHRASES, N_NEIGHBORS = 2, 2

# Latin initials of foreign names are written as such in zh/ja/ko ("J·K·罗琳", "J. K. 롤링").
_LATIN_INITIAL = re.compile(r"\b[A-Z](?=\s*[.·・])")


def _raw_ids() -> list[str]:
    """Ids straight from the JSON file, so collection works even when the loader rejects the file."""
    records = json.loads(BUNDLED_DATASET_PATH.read_text(encoding="utf-8"))
    return [str(record.get("example_id", f"#{i}")) for i, record in enumerate(records)]


FACT_IDS = _raw_ids()


@pytest.fixture(scope="module")
def dataset() -> MKEBDataset:
    return load_bundled()


@pytest.fixture(params=FACT_IDS)
def fact(dataset, request) -> Fact:
    """Each bundled fact in turn: a test taking it runs once per fact, named by its example_id."""
    return dataset.get(request.param)


def _answers(fact: Fact, code: str) -> Iterator[tuple[str, str]]:
    """(field, answer) for every answer of one language."""
    block = fact.languages[code]
    yield "target_true", block.edit.target_true or ""
    yield "target_new", block.edit.target_new
    for i, answer in enumerate(block.neighborhood_answers):
        yield f"neighborhood_answers[{i}]", answer
    if block.multi_hop_new_answer is not None:
        yield "multi_hop_new_answer", block.multi_hop_new_answer


# --- the dataset as a whole ----------------------------------------------------------------


def test_bundled_dataset_loads_and_is_large_enough(dataset):
    assert len(dataset) >= MIN_FACTS
    assert len(dataset) == len(FACT_IDS)
    assert set(MKEB_LANGUAGES) <= set(dataset.languages)


def test_bundled_dataset_has_enough_relation_types(dataset):
    relations = {fact.relation for fact in dataset if fact.relation}
    assert len(relations) >= MIN_RELATIONS, sorted(relations)
    descriptions: dict[str, set[str]] = {}
    for fact in dataset:
        descriptions.setdefault(fact.relation, set()).add(fact.relation_description)
    inconsistent = {rel: sorted(d) for rel, d in descriptions.items() if len(d) > 1}
    assert not inconsistent, f"relations with several descriptions: {inconsistent}"


def test_bundled_dataset_has_enough_multi_hop_facts(dataset):
    with_hops = [fact.example_id for fact in dataset if fact.languages["en"].multi_hop_questions]
    assert len(with_hops) >= MIN_MULTI_HOP, with_hops


def test_datasheet_counts_table_is_current(dataset):
    text = DATASHEET.read_text(encoding="utf-8")
    assert TABLE_START in text and TABLE_END in text, f"{DATASHEET} lacks the {TABLE_START} … {TABLE_END} block"
    shown = text.split(TABLE_START, 1)[1].split(TABLE_END, 1)[0].strip()
    assert shown == counts_table(dataset), (
        "assets/DATASHEET.md counts are out of date; regenerate them with `python tests/test_bundled_dataset.py`"
    )


# --- every fact ----------------------------------------------------------------------------


def test_fact_is_complete(fact):
    example_id = fact.example_id
    problems = []
    if not fact.relation:
        problems.append(f"{example_id}/relation: empty")
    if not fact.relation_description.strip():
        problems.append(f"{example_id}/relation_description: empty")
    missing = [code for code in MKEB_LANGUAGES if code not in fact.languages]
    if missing:
        problems.append(f"{example_id}/edit: missing languages {', '.join(missing)}")
    has_hops = any(block.multi_hop_questions for block in fact.languages.values())
    for code in MKEB_LANGUAGES:
        if code not in fact.languages:
            continue
        block, at = fact.languages[code], f"{example_id}/{code}"
        edit = block.edit
        if edit.prompt.count("{}") != 1:
            problems.append(f"{at}/edit.prompt: '{{}}' appears {edit.prompt.count('{}')} times, needs exactly 1")
        if not edit.target_true:
            problems.append(f"{at}/edit.target_true: missing")
        if edit.target_true and edit.target_true.casefold() == edit.target_new.casefold():
            problems.append(f"{at}/edit.target_new: same as target_true ('{edit.target_new}')")
        if len(block.paraphrase_prompts) != N_PARAPHRASES:
            problems.append(f"{at}/paraphrase_prompts: {len(block.paraphrase_prompts)}, needs {N_PARAPHRASES}")
        if len(block.neighborhood_prompts) != N_NEIGHBORS:
            problems.append(f"{at}/neighborhood_prompts: {len(block.neighborhood_prompts)}, needs {N_NEIGHBORS}")
        if len(block.neighborhood_answers) != len(block.neighborhood_prompts):
            problems.append(f"{at}/neighborhood_answers: {len(block.neighborhood_answers)} for "
                            f"{len(block.neighborhood_prompts)} prompts")
        if has_hops and not (block.multi_hop_questions and block.multi_hop_new_answer):
            problems.append(f"{at}/multi_hop_questions: missing (other languages of this fact have them)")
    assert_no_problems(problems)


def test_fact_targets_do_not_leak_into_prompts(fact):
    """A target inside its own prompt (subject filled in) or paraphrase gives the answer away."""
    example_id = fact.example_id
    problems = []
    for code, block in fact.languages.items():
        at = f"{example_id}/{code}"
        prompts = {"edit.prompt": block.edit.filled()}
        prompts.update({f"paraphrase_prompts[{i}]": p for i, p in enumerate(block.paraphrase_prompts)})
        for name in ("target_true", "target_new"):
            target = getattr(block.edit, name)
            for where, prompt in prompts.items():
                if target and target.casefold() in prompt.casefold():
                    problems.append(f"{at}/{where}: contains {name} '{target}': {prompt!r}")
            if target and target in block.neighborhood_answers:
                problems.append(f"{at}/neighborhood_answers: '{target}' is this fact's {name}")
        for i, prompt in enumerate(block.neighborhood_prompts):
            if block.edit.subject.casefold() in prompt.casefold():
                problems.append(f"{at}/neighborhood_prompts[{i}]: mentions the edited subject: {prompt!r}")
    assert_no_problems(problems)


def test_fact_answers_use_the_language_script(fact):
    example_id = fact.example_id
    problems = []
    for code, prefixes in NON_LATIN_SCRIPTS.items():
        if code not in fact.languages:
            continue
        for field, answer in _answers(fact, code):
            foreign = foreign_letters(_LATIN_INITIAL.sub("", answer), prefixes)
            if foreign:
                problems.append(f"{example_id}/{code}/{field}: '{answer}' has letters outside "
                                f"{'/'.join(prefixes)}: {foreign}")
    assert_no_problems(problems)


# --- datasheet table -----------------------------------------------------------------------


def counts_table(dataset: MKEBDataset) -> str:
    """Markdown table of facts per relation and language (the datasheet's counts section)."""
    relations = list(dict.fromkeys(fact.relation for fact in dataset))
    header = ["relation", "description", *MKEB_LANGUAGES, "multi-hop"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    totals = [0] * (len(MKEB_LANGUAGES) + 1)
    for relation in relations:
        facts = [fact for fact in dataset if fact.relation == relation]
        counts = [sum(code in fact.languages for fact in facts) for code in MKEB_LANGUAGES]
        counts.append(sum(bool(fact.languages["en"].multi_hop_questions) for fact in facts if "en" in fact.languages))
        totals = [a + b for a, b in zip(totals, counts)]
        lines.append(f"| {relation} | {facts[0].relation_description} | " + " | ".join(map(str, counts)) + " |")
    lines.append("| **total** | | " + " | ".join(f"**{n}**" for n in totals) + " |")
    blocks = [block for fact in dataset for block in fact.languages.values()]
    lines += [
        "",
        f"{len(dataset)} facts, {len(relations)} relations, {len(blocks)} language blocks; "
        f"{sum(len(b.paraphrase_prompts) for b in blocks)} paraphrase prompts, "
        f"{sum(len(b.neighborhood_prompts) for b in blocks)} neighborhood prompts, "
        f"{sum(len(b.multi_hop_questions) for b in blocks)} multi-hop questions.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(counts_table(load_bundled()))
