"""``memla ability`` on a tiny model: the unedited model and two edits, printed and written."""

from __future__ import annotations

import json
from pathlib import Path

from memla_core.cli import main

XNLI = Path(__file__).parent / "fixtures" / "ability" / "xnli_sample.tsv"


def test_ability_before_and_after_two_edits(tiny_checkpoints, tmp_path, capsys):
    out = tmp_path / "ability.json"
    argv = ["ability", "--model", str(tiny_checkpoints["llama"]), "--fact", "geo-capital-france",
            "--method", "ft,ike", "--langs", "en,ja", "--items", "2", "--sentences", "2", "--top-k", "32",
            "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "mean log-prob per answer token" in printed and "unedited" in printed
    reports = json.loads(out.read_text(encoding="utf-8"))
    assert [r["label"].split()[0] for r in reports] == ["unedited", "ft", "ike"]
    unedited, ft, ike = reports
    assert unedited["mean_drift"] == 0.0
    assert ft["mean_drift"] > 0 and ike["mean_drift"] > 0
    for report in reports:
        assert [row["language"] for row in report["table"]] == ["en", "ja", "all"]
        assert len(report["items"]) == 2 * 2 * 2  # tasks × items × languages
        assert {d["language"] for d in report["drift"]} == {"en", "ja"}


def test_ability_rejects_bad_counts_and_languages(capsys):
    assert main(["ability", "--items", "0"]) == 2
    assert "--items 0: expected a positive number or 'all'" in capsys.readouterr().err
    assert main(["ability", "--langs", "en,xx"]) == 2
    assert "xx not in the probe" in capsys.readouterr().err


def test_ability_on_an_imported_set(tiny_checkpoints, capsys):
    argv = ["ability", "--model", str(tiny_checkpoints["gpt2"]), "--probe", str(XNLI), "--probe-format", "xnli",
            "--langs", "en,de,th", "--items", "all", "--sentences", "1", "--top-k", "8"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "note: 5 XNLI rows read; 4 imported" in printed
    assert "nli %" in printed and "physical %" not in printed
