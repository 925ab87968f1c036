"""PIQA, ANLI and XNLI importers of the ability probe, on small synthetic fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from memla_core.ability.importers import IMPORTERS, import_anli, import_piqa, import_probe, import_xnli
from memla_core.data import DatasetError

FIXTURES = Path(__file__).parent / "fixtures" / "ability"


def test_piqa_with_labels_file_found_by_name():
    probe = import_piqa(FIXTURES / "piqa_sample.jsonl")
    assert [i.answer for i in probe.items] == [0, 1, 0]
    first = probe.items[0]
    assert first.task == "physical" and first.language == "en" and first.item_id == "piqa-0"
    assert first.prompt == "Question: To keep a paper cup from blowing away outside,\nAnswer:"
    assert first.choices == ("put a small stone in it.", "fill it with air.")
    assert "3 PIQA records read; 3 imported" in probe.notes[0]


def test_piqa_label_field_and_errors(tmp_path):
    path = tmp_path / "valid.jsonl"
    lines = [{"goal": "G", "sol1": "A", "sol2": "B", "label": 1}, {"goal": "", "sol1": "A", "sol2": "A", "label": 0},
             {"goal": "G", "sol1": "A", "sol2": "B"}]
    path.write_text("\n".join(json.dumps(x) for x in lines), encoding="utf-8")
    with pytest.raises(DatasetError) as err:
        import_piqa(path)
    message = str(err.value)
    assert "line 2/goal: empty" in message
    assert "line 3/label: missing, and no labels file valid-labels.lst next to valid.jsonl" in message
    path.write_text(json.dumps(lines[0]), encoding="utf-8")
    assert import_piqa(path).items[0].answer == 1
    (tmp_path / "valid-labels.lst").write_text("0\n1\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="has 2 labels for 1 records"):
        import_piqa(path)


def test_anli_maps_three_labels_to_two():
    probe = import_anli(FIXTURES / "anli_sample.jsonl")
    assert [(i.item_id, i.answer) for i in probe.items] == [("anli-a1", 0), ("anli-a2", 1), ("anli-a3", 1)]
    item = probe.items[0]
    assert item.choices == ("Yes", "No") and item.task == "nli"
    assert item.prompt.startswith("The bakery on Main Street") and "Claim: The bakery sells bread." in item.prompt
    assert "entailment 1, neutral 1, contradiction 1 -> entailment 1, not_entailment 2" in probe.notes[1]


def test_anli_errors_name_line_uid_and_field(tmp_path):
    path = tmp_path / "anli.jsonl"
    path.write_text('{"uid": "x", "context": "C", "label": "e"}\n{"uid": "y", "context": "C", "hypothesis": "H", '
                    '"label": "maybe"}\nnot json\n', encoding="utf-8")
    with pytest.raises(DatasetError) as err:
        import_anli(path)
    assert "line 3: not valid JSON" in str(err.value)
    path.write_text('{"uid": "x", "context": "C", "label": "e"}\n{"uid": "y", "context": "C", "hypothesis": "H", '
                    '"label": "maybe"}\n', encoding="utf-8")
    with pytest.raises(DatasetError) as err:
        import_anli(path)
    assert "line 1 (uid x)/hypothesis: missing" in str(err.value)
    assert "line 2 (uid y)/label: expected e, n or c" in str(err.value)


def test_xnli_keeps_languages_with_templates_and_notes_the_rest():
    probe = import_xnli(FIXTURES / "xnli_sample.tsv")
    assert [(i.item_id, i.language, i.answer) for i in probe.items] == [
        ("xnli-1", "en", 0), ("xnli-1", "de", 0), ("xnli-2", "en", 1), ("xnli-2", "th", 1)]
    de = probe.items[1]
    assert de.choices == ("Ja", "Nein") and "Behauptung: Ein Kind spielt." in de.prompt
    assert any("sw 1" in note for note in probe.notes)
    assert probe.subset(["th"]).items[0].choices == ("ใช่", "ไม่ใช่")


def test_xnli_header_and_label_errors(tmp_path):
    bad = tmp_path / "x.tsv"
    bad.write_text("language\tsentence1\tsentence2\nen\ta\tb\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="missing column\\(s\\) gold_label"):
        import_xnli(bad)
    bad.write_text("language\tgold_label\tsentence1\tsentence2\tpairID\nen\tyes\ta\tb\t7\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="line 2 \\(en pair 7\\)/gold_label: expected entailment"):
        import_xnli(bad)


def test_import_probe_by_format_name(tmp_path):
    assert set(IMPORTERS) == {"piqa", "anli", "xnli"}
    assert len(import_probe("XNLI", FIXTURES / "xnli_sample.tsv")) == 4
    with pytest.raises(ValueError, match="Unknown probe format 'hellaswag'; available formats: piqa, anli, xnli"):
        import_probe("hellaswag", FIXTURES / "xnli_sample.tsv")
    with pytest.raises(DatasetError, match="file not found"):
        import_probe("anli", tmp_path / "missing.jsonl")
