"""Checks the bundled general-ability probe and ordinary sentences (assets/ability/; assets/DATASHEET.md).

Failures list ``<item>/<lang>/<field>: problem`` lines. Run this file as a script to print the
datasheet's counts table: ``python tests/test_ability_data.py``.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest
from script_checks import HAN_MARKS, NON_LATIN_SCRIPTS, assert_no_problems, foreign_letters

from memla_core.ability import NLI_LABELS, load_bundled_probe, load_sentences
from memla_core.ability.items import ABILITY_DIR, NLI_PATH, PHYSICAL_PATH, SENTENCES_PATH
from memla_core.data import MKEB_LANGUAGES

DATASHEET = ABILITY_DIR.parent / "DATASHEET.md"
TABLE_START, TABLE_END = "<!-- ability-counts:start -->", "<!-- ability-counts:end -->"
MIN_ITEMS, MIN_SENTENCES = 60, 20

SCRIPTS: dict[str, tuple[str, ...]] = {
    **NON_LATIN_SCRIPTS,
    **{code: ("LATIN",) for code in ("en", "fr", "de", "it", "es", "pt", "pl")},
}
ALLOWED_MARKS = HAN_MARKS | {"ー"}  # and the katakana prolonged sound mark
# Letters a language's text must use somewhere (the language's own, not an English copy).
SIGNATURE: dict[str, str] = {
    "zh": "的了是", "ja": "はをの", "ko": "다요이", "ru": "ыяй", "th": "ที่ไ",
    "fr": "éèàç", "de": "äöüß", "it": "èàìù", "es": "ñ¿á", "pt": "ãçá", "pl": "ąęłśżź",
}


def _raw(path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


PHYSICAL, NLI, SENTENCES = _raw(PHYSICAL_PATH), _raw(NLI_PATH), _raw(SENTENCES_PATH)


def _texts(doc: dict, key: str) -> dict[str, dict[str, list[str]]]:
    """{item id: {language: [every string of that item in that language]}}."""
    out = {}
    for i, item in enumerate(doc[key]):
        per_lang = {}
        for lang, fields in item.get("text", {}).items():
            if isinstance(fields, str):
                per_lang[lang] = [fields]
            else:
                per_lang[lang] = [v for value in fields.values() for v in (value if isinstance(value, list) else [value])]
        out[str(item.get("id", f"#{i}"))] = per_lang
    return out


def test_probe_loads_with_enough_items_in_every_language():
    probe = load_bundled_probe()
    assert probe.languages == MKEB_LANGUAGES
    for task in ("physical", "nli"):
        per_lang = Counter(item.language for item in probe.items if item.task == task)
        assert set(per_lang) == set(MKEB_LANGUAGES)
        assert min(per_lang.values()) >= MIN_ITEMS, per_lang


@pytest.mark.parametrize("doc, key", [(PHYSICAL, "items"), (NLI, "items"), (SENTENCES, "sentences")],
                         ids=["physical", "nli", "sentences"])
def test_every_item_in_all_12_languages_no_empty_field_no_english_copy(doc, key):
    problems = []
    for item_id, per_lang in _texts(doc, key).items():
        missing = [code for code in MKEB_LANGUAGES if code not in per_lang]
        if missing:
            problems.append(f"{item_id}: missing languages {', '.join(missing)}")
        for lang, strings in per_lang.items():
            if any(not s.strip() for s in strings):
                problems.append(f"{item_id}/{lang}: an empty field")
            if lang != "en" and strings == per_lang.get("en"):
                problems.append(f"{item_id}/{lang}: same text as English (untranslated?)")
            if any(s != s.strip() or "  " in s for s in strings):
                problems.append(f"{item_id}/{lang}: stray spaces")
    assert_no_problems(problems, shown=60)


@pytest.mark.parametrize("doc, key", [(PHYSICAL, "items"), (NLI, "items"), (SENTENCES, "sentences")],
                         ids=["physical", "nli", "sentences"])
def test_text_is_in_the_language_script(doc, key):
    problems = []
    for item_id, per_lang in _texts(doc, key).items():
        for lang, strings in per_lang.items():
            for s in strings:
                foreign = foreign_letters(s, SCRIPTS[lang], ALLOWED_MARKS)
                if foreign:
                    problems.append(f"{item_id}/{lang}: letters outside {'/'.join(SCRIPTS[lang])}: {foreign} in {s!r}")
    for name, doc_ in (("physical", PHYSICAL), ("nli", NLI)):
        for lang, spec in doc_["templates"].items():
            words = [spec["prompt"].replace("{goal}", "").replace("{premise}", "").replace("{hypothesis}", "")]
            for s in words + list(spec.get("choices", [])):
                foreign = foreign_letters(s, SCRIPTS[lang], ALLOWED_MARKS)
                if foreign:
                    problems.append(f"{name} templates/{lang}: letters outside {'/'.join(SCRIPTS[lang])}: {foreign}")
    assert_no_problems(problems, shown=60)


def test_each_language_uses_its_own_letters():
    """A language's text as a whole holds letters English does not use (é, ß, ł, 的, ы …)."""
    problems = []
    for lang, letters in SIGNATURE.items():
        text = "".join(s for doc, key in ((PHYSICAL, "items"), (NLI, "items"), (SENTENCES, "sentences"))
                       for per_lang in _texts(doc, key).values() for s in per_lang.get(lang, []))
        absent = [c for c in letters if c not in text]
        if absent:
            problems.append(f"{lang}: never uses {''.join(absent)}")
    assert_no_problems(problems, shown=60)


def test_choices_differ_and_labels_are_balanced():
    problems = []
    for item in PHYSICAL["items"]:
        for lang, fields in item["text"].items():
            a, b = fields["choices"]
            if a.strip().casefold() == b.strip().casefold():
                problems.append(f"{item['id']}/{lang}/choices: both '{a}'")
    for lang, spec in NLI["templates"].items():
        if len(set(c.casefold() for c in spec["choices"])) != 2:
            problems.append(f"nli templates/{lang}/choices: {spec['choices']}")
    assert_no_problems(problems, shown=60)
    answers = Counter(item["answer"] for item in PHYSICAL["items"])
    labels = Counter(item["label"] for item in NLI["items"])
    assert set(answers) == {0, 1} and abs(answers[0] - answers[1]) <= 2, answers
    assert set(labels) == set(NLI_LABELS) and abs(labels["entailment"] - labels["not_entailment"]) <= 2, labels


def test_enough_ordinary_sentences_per_language():
    sentences = load_sentences()
    assert set(sentences) == set(MKEB_LANGUAGES)
    short = {lang: len(v) for lang, v in sentences.items() if len(v) < MIN_SENTENCES}
    assert not short, short
    duplicates = {lang: [s for s, n in Counter(v).items() if n > 1] for lang, v in sentences.items()}
    assert not any(duplicates.values()), duplicates


def test_datasheet_counts_table_is_current():
    text = DATASHEET.read_text(encoding="utf-8")
    assert TABLE_START in text and TABLE_END in text, f"{DATASHEET} lacks the {TABLE_START} … {TABLE_END} block"
    shown = text.split(TABLE_START, 1)[1].split(TABLE_END, 1)[0].strip()
    assert shown == counts_table(), (
        "assets/DATASHEET.md ability counts are out of date; regenerate them with `python tests/test_ability_data.py`"
    )


def counts_table() -> str:
    probe, sentences = load_bundled_probe(), load_sentences()
    header = ["set", *MKEB_LANGUAGES, "labels"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    answers = Counter(item["answer"] for item in PHYSICAL["items"])
    labels = Counter(item["label"] for item in NLI["items"])
    label_text = {"physical": f"right choice first {answers[0]}, second {answers[1]}",
                  "nli": ", ".join(f"{k} {labels[k]}" for k in NLI_LABELS)}
    for task in ("physical", "nli"):
        counts = Counter(item.language for item in probe.items if item.task == task)
        lines.append(f"| {task} items | " + " | ".join(str(counts[c]) for c in MKEB_LANGUAGES) + f" | {label_text[task]} |")
    lines.append("| ordinary sentences | " + " | ".join(str(len(sentences[c])) for c in MKEB_LANGUAGES) + " | |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(counts_table())
