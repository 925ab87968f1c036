"""Importers (MzsRE, MLaKE, CounterFact) -> validated MKEB datasets, with their fallbacks counted.

MzsRE data is read from the shared data folder next to the repository and never copied into it;
the synthetic records written here are made up for the tests.
"""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from memla_core.data import DatasetError, MKEBDataset, load_mkeb
from memla_core.data.importers import IMPORTERS, import_dataset
from memla_core.data.importers.mzsre import MZSRE_TO_ISO

FIXTURES = Path(__file__).resolve().parent / "fixtures"
MLAKE_FIXTURE = FIXTURES / "mlake"
COUNTERFACT_FIXTURE = FIXTURES / "counterfact_sample.json"
MZSRE_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "mzsre"
MZSRE_SAMPLE = MZSRE_DIR / "mzsre_sample_30.json"
MZSRE_FULL = MZSRE_DIR / "mzsre_test_12lang.json"
ISO_TO_MZSRE = {iso: code for code, iso in MZSRE_TO_ISO.items()}

needs_mzsre = pytest.mark.skipif(
    not MZSRE_SAMPLE.is_file(),
    reason=f"MzsRE data not found at {MZSRE_DIR} (the shared data folder beside the repository); "
    "it is not shipped with memla",
)


def _write(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def _note(dataset: MKEBDataset, fragment: str) -> str:
    """The one note that contains ``fragment`` (fails with all notes shown if none does)."""
    matches = [note for note in dataset.notes if fragment in note]
    assert matches, f"no note contains {fragment!r}; notes: {dataset.notes}"
    return matches[0]


def _assert_round_trip(dataset: MKEBDataset, tmp_path: Path) -> None:
    path = tmp_path / "roundtrip.json"
    dataset.save(path)
    reloaded = load_mkeb(path)
    assert reloaded.to_records() == dataset.to_records()
    assert [fact.example_id for fact in reloaded] == [fact.example_id for fact in dataset]


# --- registry ------------------------------------------------------------------------------


def test_registry_lists_every_format():
    assert set(IMPORTERS) == {"mzsre", "mlake", "counterfact"}


def test_unknown_format_lists_the_available_ones():
    with pytest.raises(ValueError, match="available formats: mzsre, mlake, counterfact"):
        import_dataset("zsre", COUNTERFACT_FIXTURE)


def test_format_name_is_case_insensitive():
    assert len(import_dataset(" CounterFact ", COUNTERFACT_FIXTURE)) == 3


# --- MzsRE ---------------------------------------------------------------------------------


def _mzsre_block(**overrides: Any) -> dict[str, Any]:
    block: dict[str, Any] = {
        "subject": "Glimmer Bridge",
        "src": "When was Glimmer Bridge opened?",
        "rephrase": "In which year did Glimmer Bridge open?",
        "alt": "2006",
        "loc": "who painted the blue door",
        "loc_ans": "Ada Lind",
        "portability": {"New Question": "How old was Glimmer Bridge in 2016?", "New Answer": "10"},
    }
    block.update(overrides)
    return block


def _mzsre_record(rid: int = 0, **blocks: dict[str, Any]) -> dict[str, Any]:
    return {"id": rid, **blocks}


@needs_mzsre
def test_mzsre_sample_maps_codes_and_keeps_target_true_unknown():
    raw = json.loads(MZSRE_SAMPLE.read_text(encoding="utf-8"))
    dataset = import_dataset("mzsre", MZSRE_SAMPLE)

    assert len(dataset) == len(raw) == 30
    expected_codes = {MZSRE_TO_ISO.get(code, code) for code in raw[0] if code != "id"}
    assert set(dataset.languages) == expected_codes
    assert {"cs", "nl"} <= set(dataset.languages) and not {"cz", "du"} & set(dataset.languages)
    assert "cz→cs, du→nl" in _note(dataset, "ISO 639-1")
    for fact, record in zip(dataset, raw):
        assert fact.example_id == f"mzsre-{record['id']}"
        assert fact.metadata["mzsre_id"] == record["id"]
        for code, block in fact.languages.items():
            source = record[ISO_TO_MZSRE.get(code, code)]
            assert block.edit.target_true is None
            assert block.edit.prompt == source["src"].strip() and not block.edit.has_placeholder
            assert fact.metadata["subject_in_prompt"][code] == (source["subject"] in source["src"])
            assert not any(p.startswith("nq question:") for p in block.neighborhood_prompts)
            assert block.multi_hop_new_answer == source["portability"]["New Answer"].strip()


@needs_mzsre
def test_mzsre_sample_notes_count_every_fallback():
    raw = json.loads(MZSRE_SAMPLE.read_text(encoding="utf-8"))
    dataset = import_dataset("mzsre", MZSRE_SAMPLE)
    iso = lambda code: MZSRE_TO_ISO.get(code, code)  # noqa: E731
    blocks = [(iso(code), block) for record in raw for code, block in record.items() if code != "id"]

    same = Counter(code for code, block in blocks if block["rephrase"] == block["src"])
    assert sum(same.values()) > 0
    note = _note(dataset, "identical to 'src'")
    for code, count in same.items():
        assert f"{code} {count}" in note
    for fact, record in zip(dataset, raw):
        for code, block in fact.languages.items():
            source = record[ISO_TO_MZSRE.get(code, code)]
            assert (block.paraphrase_prompts == ()) == (source["rephrase"] == source["src"])

    absent = Counter(code for code, block in blocks if block["subject"] not in block["src"])
    note = _note(dataset, "Subject not verbatim")
    for code, count in absent.items():
        assert f"{code} {count}" in note

    spaces = sum(1 for code, block in blocks if code == "en" and block["alt"] != block["alt"].strip())
    if spaces:
        assert f"en alt {spaces}" in _note(dataset, "spaces stripped")
    assert f"en {len(raw)}" in _note(dataset, "prefix stripped")
    assert f"{len(raw)} imported with {len(blocks)} language blocks" in dataset.notes[0]


@pytest.mark.skipif(not MZSRE_FULL.is_file(), reason=f"full MzsRE file not found at {MZSRE_FULL}")
def test_mzsre_full_file_matches_the_data_readme():
    """Counts published in shared/data/mzsre/README.md, reproduced by the importer."""
    dataset = import_dataset("mzsre", MZSRE_FULL)
    assert len(dataset) == 743
    present = {"en": 743, "zh": 743, "de": 533, "tr": 496, "vi": 493, "cs": 428, "nl": 413,
               "pt": 410, "es": 374, "fr": 369, "ru": 360, "th": 134}
    note = _note(dataset, "Subject not verbatim")
    for code, count in present.items():
        if count < 743:
            assert f"{code} {743 - count}" in note
    assert "th: 37 Buddhist-era years" in _note(dataset, "Buddhist-era")
    assert "en alt 9" in _note(dataset, "spaces stripped")


def test_mzsre_converts_thai_buddhist_era_years(tmp_path):
    records = [
        _mzsre_record(0, en=_mzsre_block(alt="2006"), th=_mzsre_block(alt="2549")),
        _mzsre_record(1, en=_mzsre_block(alt="1944"), th=_mzsre_block(alt="พ.ศ. 2487")),
        _mzsre_record(2, en=_mzsre_block(alt="1952"), th=_mzsre_block(alt="1952")),  # already Gregorian
        _mzsre_record(3, en=_mzsre_block(alt="Volvo"), th=_mzsre_block(alt="2549")),  # not a year in en
        _mzsre_record(4, en=_mzsre_block(alt="2006"), th=_mzsre_block(alt="2550")),  # not en + 543
    ]
    dataset = import_dataset("mzsre", _write(tmp_path / "thai.json", records))
    thai = [fact.in_language("th").edit.target_new for fact in dataset]
    assert thai == ["2006", "1944", "1952", "2549", "2550"]
    note = _note(dataset, "Buddhist-era")
    assert "th: 2 Buddhist-era years" in note and "1 written with 'พ.ศ.'" in note and "records 0, 1." in note


def test_mzsre_fallbacks_on_synthetic_records(tmp_path):
    records = [
        _mzsre_record(
            7,
            en=_mzsre_block(alt=" 2006 ", loc="nq question: who painted the blue door", loc_ans=" Ada Lind"),
            cz=_mzsre_block(rephrase="When was Glimmer Bridge opened?"),  # same as src
            du=_mzsre_block(alt=""),  # unusable
            th=_mzsre_block(subject="สะพานกลิมเมอร์", portability={}),
        ),
        _mzsre_record(8, en=_mzsre_block(src="  "), de=_mzsre_block(alt="")),  # nothing usable
    ]
    dataset = import_dataset("mzsre", _write(tmp_path / "synthetic.json", records))

    assert [fact.example_id for fact in dataset] == ["mzsre-7"]
    fact = dataset.get("mzsre-7")
    assert set(fact.languages) == {"en", "cs", "th"}
    en = fact.in_language("en")
    assert en.edit.target_new == "2006" and en.neighborhood_answers == ("Ada Lind",)
    assert en.neighborhood_prompts == ("who painted the blue door",)
    assert en.paraphrase_prompts == ("In which year did Glimmer Bridge open?",)
    assert fact.in_language("cs").paraphrase_prompts == ()
    assert fact.in_language("th").multi_hop_questions == ()
    assert fact.metadata["subject_in_prompt"] == {"en": True, "cs": True, "th": False}

    assert "cs 1" in _note(dataset, "identical to 'src'")
    assert "en alt 1" in _note(dataset, "spaces stripped") and "en loc_ans 1" in _note(dataset, "spaces stripped")
    assert "th 1" in _note(dataset, "no multi-hop")
    skipped = _note(dataset, "unusable language blocks skipped")
    assert skipped.startswith("3 unusable") and "7/nl (empty alt)" in skipped and "8/en (empty src)" in skipped
    assert "records dropped (no usable block): 8." in _note(dataset, "records dropped")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"id": 0, "en": _mzsre_block()}, "expected a JSON list of MzsRE records"),
        ([_mzsre_record(0, en=_mzsre_block()), ["not", "a", "record"]], "record #1: expected an object"),
        ([{"en": _mzsre_block()}], "record #0: missing 'id'"),
        ([_mzsre_record(5, en={k: v for k, v in _mzsre_block().items() if k != "alt"})], "record 5 (#0)/en.alt: missing"),
        ([_mzsre_record(5, en=_mzsre_block(alt=2006))], "record 5 (#0)/en.alt: expected a string, got int"),
        ([_mzsre_record(5, en="When was it opened?")], "record 5 (#0)/en: expected an object"),
        ([_mzsre_record(5, en=_mzsre_block(portability=["q", "a"]))], "record 5 (#0)/en.portability"),
        ([_mzsre_record(5)], "record 5 (#0): no language blocks"),
    ],
    ids=["not-a-list", "record-not-object", "missing-id", "missing-field", "wrong-type", "block-not-object",
         "portability-not-object", "no-blocks"],
)
def test_mzsre_malformed_input_names_the_record(tmp_path, data, message):
    with pytest.raises(DatasetError, match=re.escape(message)):
        import_dataset("mzsre", _write(tmp_path / "bad.json", data))


def test_mzsre_without_any_usable_record_is_refused(tmp_path):
    path = _write(tmp_path / "empty.json", [_mzsre_record(0, en=_mzsre_block(alt=""))])
    with pytest.raises(DatasetError, match=r"no usable record was found(.|\n)*0/en \(empty alt\)"):
        import_dataset("mzsre", path)


def test_mzsre_missing_file_says_which(tmp_path):
    with pytest.raises(DatasetError, match="file not found"):
        import_dataset("mzsre", tmp_path / "absent.json")


@needs_mzsre
def test_mzsre_round_trips(tmp_path):
    _assert_round_trip(import_dataset("mzsre", MZSRE_SAMPLE), tmp_path)


# --- MLaKE ---------------------------------------------------------------------------------


def test_mlake_fixture_imports_questions_as_prompts():
    dataset = import_dataset("mlake", MLAKE_FIXTURE)
    assert len(dataset) == 3
    assert dataset.languages == ("en", "zh", "fr", "de", "ja")
    eiffel = dataset.get("mlake-0")
    for code, block in eiffel.languages.items():
        assert block.edit.prompt == block.edit.subject and not block.edit.has_placeholder
        assert block.paraphrase_prompts == () and block.neighborhood_prompts == ()
    en, ja = eiffel.in_language("en"), eiffel.in_language("ja")
    assert (en.edit.target_true, en.edit.target_new) == ("France", "Italy")
    assert (ja.edit.target_true, ja.edit.target_new) == ("フランス", "イタリア")
    assert en.multi_hop_new_answer == "Rome" and ja.multi_hop_new_answer == "ローマ"
    assert eiffel.metadata["aliases"]["en"] == {"target_true": ["French Republic"], "target_new": ["Italian Republic"]}
    assert all(not block.multi_hop_questions for block in dataset.get("mlake-2").languages.values())

    assert "in all 15 blocks" in _note(dataset, "question is used as edit prompt")
    assert "ja 2" in _note(dataset, "through the English e_prompt")
    kept = _note(dataset, "Multi-hop questions kept")
    assert all(f"{code} 2" in kept for code in ("en", "zh", "fr", "de", "ja"))


def test_mlake_accepts_upstream_layout_and_jp_code(tmp_path):
    """The upstream repository nests files as dataset/{single_hop,multi_hop}/qa/; 'jp' becomes 'ja'."""
    for part in ("single_hop", "multi_hop"):
        target = tmp_path / "dataset" / part / "qa"
        shutil.copytree(MLAKE_FIXTURE / part, target)
    (tmp_path / "dataset/single_hop/qa/ja_qa.json").rename(tmp_path / "dataset/single_hop/qa/jp_qa.json")
    (tmp_path / "dataset/multi_hop/qa/new_ja_qa.json").rename(tmp_path / "dataset/multi_hop/qa/new_jp_qa.json")
    dataset = import_dataset("mlake", tmp_path)
    assert "ja" in dataset.languages and "jp" not in dataset.languages
    assert dataset.get("mlake-0").in_language("ja").multi_hop_new_answer == "ローマ"
    assert "jp→ja" in _note(dataset, "ISO 639-1")


def _mlake_copy(tmp_path: Path) -> Path:
    root = tmp_path / "mlake"
    shutil.copytree(MLAKE_FIXTURE, root)
    return root


def test_mlake_multi_hop_keeps_one_answer_per_edit(tmp_path):
    root = _mlake_copy(tmp_path)
    path = root / "multi_hop" / "new_en_qa.json"
    hops = json.loads(path.read_text(encoding="utf-8"))
    eiffel = hops[0]["e_prompt"]
    hops += [
        {"question": "Which city is the capital of the Eiffel Tower's country?", "e_prompt": eiffel, "e_answer": "Rome"},
        {"question": "On which continent is the Eiffel Tower's country?", "e_prompt": eiffel, "e_answer": "Europe"},
        {"question": "Who runs the tower?", "e_prompt": "A statement no single-hop edit makes.", "e_answer": "X"},
    ]
    _write(path, hops)
    dataset = import_dataset("mlake", root)
    en = dataset.get("mlake-0").in_language("en")
    assert len(en.multi_hop_questions) == 2 and en.multi_hop_new_answer == "Rome"
    assert "en 1" in _note(dataset, "has another answer")
    assert "en 1" in _note(dataset, "names no single-hop edit")


def test_mlake_skips_unusable_blocks(tmp_path):
    root = _mlake_copy(tmp_path)
    path = root / "single_hop" / "de_qa.json"
    rows = json.loads(path.read_text(encoding="utf-8"))
    rows[1]["e_answer"] = ""
    rows[2]["o_answer"] = ""
    _write(path, rows)
    dataset = import_dataset("mlake", root)
    assert "de" not in dataset.get("mlake-1").languages
    assert dataset.get("mlake-2").in_language("de").edit.target_true is None
    assert "1/de (empty e_answer)" in _note(dataset, "unusable language blocks skipped")
    assert "de 1" in _note(dataset, "target_true unknown")


def test_mlake_files_of_different_length_are_refused(tmp_path):
    root = _mlake_copy(tmp_path)
    path = root / "single_hop" / "fr_qa.json"
    _write(path, json.loads(path.read_text(encoding="utf-8"))[:2])
    with pytest.raises(DatasetError, match=r"differ in length .*fr 2"):
        import_dataset("mlake", root)


@pytest.mark.parametrize(
    ("file", "edit", "message"),
    [
        ("single_hop/en_qa.json", lambda rows: {"question": "?"}, "en_qa.json: expected a JSON list"),
        ("single_hop/en_qa.json", lambda rows: [rows[0], "text"], "single_hop/en_qa.json record #1: expected an object"),
        ("single_hop/zh_qa.json", lambda rows: [rows[0], {k: v for k, v in rows[1].items() if k != "e_answer"}, rows[2]],
         "single_hop/zh_qa.json record #1.e_answer: missing"),
        ("single_hop/ja_qa.json", lambda rows: [rows[0], rows[1], {**rows[2], "o_answer": 3}],
         "single_hop/ja_qa.json record #2.o_answer: expected a string, got int"),
        ("single_hop/de_qa.json", lambda rows: [{**rows[0], "e_answer_aliases": "Italia"}, *rows[1:]],
         "single_hop/de_qa.json record #0.e_answer_aliases: expected a list of strings"),
        ("multi_hop/new_fr_qa.json", lambda rows: [{"question": "Où ?", "e_answer": "Rome"}],
         "multi_hop/new_fr_qa.json record #0.e_prompt: missing"),
    ],
    ids=["not-a-list", "record-not-object", "missing-field", "wrong-type", "aliases-not-list", "multi-hop-field"],
)
def test_mlake_malformed_input_names_the_record(tmp_path, file, edit, message):
    root = _mlake_copy(tmp_path)
    path = root / file
    _write(path, edit(json.loads(path.read_text(encoding="utf-8"))))
    with pytest.raises(DatasetError, match=re.escape(message)):
        import_dataset("mlake", root)


def test_mlake_folder_without_single_hop_explains_the_layout(tmp_path):
    with pytest.raises(DatasetError, match=r"no single_hop/ folder .*single_hop/<lang>_qa.json"):
        import_dataset("mlake", tmp_path)


def test_mlake_round_trips(tmp_path):
    _assert_round_trip(import_dataset("mlake", MLAKE_FIXTURE), tmp_path)


# --- CounterFact ---------------------------------------------------------------------------


def test_counterfact_fixture_imports_english_records():
    dataset = import_dataset("counterfact", COUNTERFACT_FIXTURE)
    assert len(dataset) == 3 and dataset.languages == ("en",)
    chirac = dataset.get("counterfact-0")
    edit = chirac.in_language("en").edit
    assert (edit.subject, edit.prompt, edit.target_true, edit.target_new) == (
        "Jacques Chirac", "The mother tongue of {} is", "French", "English")
    assert chirac.relation == "P103" and chirac.metadata == {"source": "CounterFact", "case_id": 0}
    for fact in dataset:
        block = fact.in_language("en")
        assert block.edit.has_placeholder
        assert block.neighborhood_answers == (block.edit.target_true,) * len(block.neighborhood_prompts)
    assert "5 prompts" in _note(dataset, "Neighborhood answers are each record's target_true")
    assert _note(dataset, "generation prompts").startswith("3 generation prompts not imported")
    assert _note(dataset, "attribute prompts").startswith("1 attribute prompts not imported")


def _counterfact_records() -> list[dict[str, Any]]:
    return json.loads(COUNTERFACT_FIXTURE.read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda records: {"case_id": 0}, "expected a JSON list of CounterFact records"),
        (lambda records: [records[0], 42], "record #1: expected an object"),
        (lambda records: [{k: v for k, v in records[0].items() if k != "case_id"}], "record #0: missing 'case_id'"),
        (lambda records: [{k: v for k, v in records[1].items() if k != "requested_rewrite"}],
         "record 1 (#0)/requested_rewrite: expected an object"),
        (lambda records: [{**records[0], "requested_rewrite": {**records[0]["requested_rewrite"], "target_new": "Dutch"}}],
         "record 0 (#0)/requested_rewrite.target_new: expected an object {'str': ...}"),
        (lambda records: [{**records[0], "requested_rewrite": {**records[0]["requested_rewrite"], "subject": None}}],
         "record 0 (#0)/requested_rewrite.subject: missing"),
        (lambda records: [{**records[2], "paraphrase_prompts": "Messi plays as a"}],
         "record 2 (#0).paraphrase_prompts: expected a list of strings"),
        (lambda records: [{**records[0], "requested_rewrite": {**records[0]["requested_rewrite"], "prompt": "Chirac spoke"}}],
         "record 0 (#0)/requested_rewrite.prompt: has no '{}'"),
        (lambda records: [{**records[1], "requested_rewrite": {**records[1]["requested_rewrite"], "target_new": {"str": "Tokyo"}}}],
         "record counterfact-1/edit.en.target_new: equals target_true"),
    ],
    ids=["not-a-list", "record-not-object", "missing-case-id", "missing-rewrite", "target-not-object",
         "null-subject", "paraphrases-not-list", "prompt-without-placeholder", "same-targets"],
)
def test_counterfact_malformed_input_names_the_record(tmp_path, edit, message):
    path = _write(tmp_path / "bad.json", edit(_counterfact_records()))
    with pytest.raises(DatasetError, match=re.escape(message)):
        import_dataset("counterfact", path)


def test_counterfact_round_trips(tmp_path):
    _assert_round_trip(import_dataset("counterfact", COUNTERFACT_FIXTURE), tmp_path)
