import json
from pathlib import Path

import pandas as pd
import pytest

from memla_core.cli import main

MZSRE_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "mzsre" / "mzsre_sample_30.json"


def test_facts_stats(capsys):
    assert main(["facts", "--stats"]) == 0
    out = capsys.readouterr().out
    assert "62 facts" in out and "total" in out


def test_facts_of_a_split_are_that_split(capsys):
    from memla_core.data import load_bundled
    from memla_core.data.splits import split_assignment

    assignment = split_assignment(load_bundled().facts)
    listed = {}
    for split in ("dev", "test"):
        assert main(["facts", "--split", split]) == 0
        listed[split] = [line.split(":")[0] for line in capsys.readouterr().out.splitlines() if line]
        assert listed[split] and all(assignment[fact_id] == split for fact_id in listed[split])
    assert len(listed["dev"]) + len(listed["test"]) == 62
    assert main(["facts", "--split", "test", "--stats"]) == 0
    assert f"(test split): {len(listed['test'])} facts" in capsys.readouterr().out


def test_edit_on_tiny_model_writes_json_and_csv(tiny_checkpoints, tmp_path, capsys):
    model = str(tiny_checkpoints["llama"])
    args = ["edit", "--model", model, "--fact", "geo-capital-france", "--langs", "en,zh,fr",
            "--ig-steps", "2", "--threshold", "0.2", "--lr", "0.05"]
    assert main([*args, "--out", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "MEMLA edit of geo-capital-france" in out and "en-avg:" in out
    payload = json.loads((tmp_path / "r.json").read_text())
    assert [row["lang"] for row in payload["table"]] == ["en", "zh", "fr"]
    assert payload["config"]["neurons"]["steps"] == 2
    assert main([*args, "--ablation", "w/o LIE", "--out", str(tmp_path / "r.csv")]) == 0
    table = pd.read_csv(tmp_path / "r.csv")
    assert set(["ES", "PS", "NS", "QS", "answer_before", "answer_after"]) <= set(table.columns)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["edit", "--fact", "nope"], "No fact with id 'nope'"),
        (["edit", "--fact", "geo-capital-france", "--source-lang", "xx"], "has no 'xx' version"),
        (["facts", "--dataset", "missing.json"], "file not found"),
        (["edit", "--fact", "geo-capital-france", "--method", "magic"], "Unknown editing method 'magic'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("memla: error:") and message in err


def test_import_then_edit_mzsre(tiny_checkpoints, tmp_path, capsys):
    if not MZSRE_SAMPLE.exists():
        pytest.skip(f"shared MzsRE sample not found at {MZSRE_SAMPLE}")
    out = tmp_path / "mzsre.json"
    assert main(["import", "mzsre", str(MZSRE_SAMPLE), "--out", str(out)]) == 0
    assert "wrote 30 facts" in capsys.readouterr().out
    assert main(["edit", "--model", str(tiny_checkpoints["gpt2"]), "--dataset", str(out), "--fact", "mzsre-0",
                 "--langs", "en,de", "--ig-steps", "2", "--threshold", "0.2", "--independent-langs", "en,de"]) == 0
    assert "token accuracy" in capsys.readouterr().out
