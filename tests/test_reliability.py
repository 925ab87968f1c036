"""Regression tests of the fault cases of issue 12 (docs/reliability.md lists them with the
expected answers; ``test_every_fault_case_has_a_test`` keeps that table and these tests in step).
Tiny random models only; the end-to-end run on the default model is benchmarks/fault_injection.py."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from memla_core.bench import lock
from memla_core.bench.store import CUT_OFF_LINE, parse_results
from memla_core.bench.summaries import coverage, run_totals
from memla_core.bounds import InputTooLargeError, check_prompt_lengths, check_results_name
from memla_core.cli import main
from memla_core.data import DatasetError, load_mkeb
from memla_core.data.loader import fact_to_record
from memla_core.editing import Edit, EditRequest
from memla_core.evaluation import PROB_COMPARE, EvaluationError, es_definition, evaluate
from memla_core.health import edit_health, is_degenerate
from memla_core.metrics import clears_floor, prefers_new
from memla_core.models import ModelLoadError, ModelSpec, load_model
from memla_core.outputs import KeptResultError, write_or_keep

ROOT = Path(__file__).resolve().parents[1]
RELIABILITY_DOC = ROOT / "docs" / "reliability.md"


def _wrecking_edit(lm, fact_id: str = "geo-capital-france") -> Edit:
    """What lr=1e9 does to a model: huge weights where the next token is read out. (A random tiny
    model predicts almost uniformly, so only large logits move its distributions.)"""
    generator = torch.Generator().manual_seed(0)
    head = lm.model.get_output_embeddings().weight
    name = next(n for n, p in lm.model.named_parameters() if p is head)
    delta = torch.randn(head.shape, generator=generator) * 50
    return Edit("ft", fact_id, "en", weight_deltas={name: delta})


# ----------------------------------------------------------------------------- 1. destroyed model


def test_destroyed_model_is_flagged_degenerate(tiny_models, bundled):
    lm, fact = tiny_models["llama"], bundled.get("geo-capital-france")
    broken = edit_health(lm, _wrecking_edit(lm), fact, ["en", "fr"])
    assert broken.degenerate and broken.label.startswith("degenerate: ")
    assert "KL" in broken.label or "NaN" in broken.label
    nothing = edit_health(lm, Edit("ft", fact.example_id, "en"), fact, ["en", "fr"])
    assert not nothing.degenerate and nothing.drift_kl == pytest.approx(0.0, abs=1e-6)
    assert nothing.label == "ok"


def test_negligible_p_new_does_not_count_as_success():
    # The French case of issue 12: P(new) 5.27e-19 > P(true) 1.49e-20, one answer token.
    lp_new, lp_true = math.log(5.27e-19), math.log(1.49e-20)
    assert prefers_new(lp_new, lp_true)  # the paper's pure definition says success
    assert not clears_floor(lp_new, 1, 1e-4)
    assert clears_floor(math.log(0.3), 1, 1e-4) and clears_floor(math.log(1e-6), 2, 1e-4)  # 1e-3 per token
    assert clears_floor(lp_new, 1, 0.0)  # floor 0 = the paper's definition
    assert es_definition(0) == PROB_COMPARE and "P(new)>=0.0001/token" in es_definition(1e-4)


def test_es_floor_applies_in_evaluation(tiny_models, bundled):
    lm, fact = tiny_models["gpt2"], bundled.get("geo-capital-france")
    pure = evaluate(lm, fact, ["en"], p_new_floor=0).summary.iloc[0]
    huge_floor = evaluate(lm, fact, ["en"], p_new_floor=0.999).summary.iloc[0]
    assert pure.es_definition == PROB_COMPARE
    assert huge_floor.ES == 0.0 and huge_floor.PS == 0.0  # no random-model P(new) reaches 0.999


@pytest.fixture(scope="module")
def peaked_checkpoint(tiny_checkpoints, tmp_path_factory) -> Path:
    """The tiny llama with a 100x output layer: its next-token distributions are peaked like a
    trained model's (a random tiny model predicts almost uniformly, whatever its weights)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_checkpoints["llama"])
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(100)
    path = tmp_path_factory.mktemp("peaked-llama")
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_checkpoints["llama"]).save_pretrained(path)
    return path


def test_cli_edit_warns_and_strict_exits_nonzero_on_degenerate_edit(peaked_checkpoint, tmp_path, capsys):
    args = ["edit", "--model", str(peaked_checkpoint), "--fact", "geo-capital-france", "--langs", "en,fr",
            "--method", "ft", "--set", "lr=1e9", "--set", "norm_constraint=inf", "--out", str(tmp_path / "r.json")]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "degenerate edit" in captured.err
    assert json.loads((tmp_path / "r.json").read_text())["health"]["label"].startswith("degenerate")
    assert main([*args, "--strict"]) == 3


def test_bench_rows_carry_health_and_summaries_count_degenerate():
    rows = pd.DataFrame({
        "fact_id": ["a", "a", "b"], "method": ["ft", "ft", "ft"], "source_lang": ["en"] * 3,
        "target_lang": ["en", "fr", "en"], "error": ["", "", ""],
        "health": ["degenerate: drift", "degenerate: drift", "ok"],
        "seconds_neurons": [0.0] * 3, "seconds_edit": [1.0] * 3, "seconds_eval": [1.0] * 3,
    })
    assert run_totals(rows)["degenerate"] == 1
    assert coverage(rows)["degenerate"].tolist() == [1]
    assert is_degenerate("degenerate: x") and not is_degenerate("ok") and not is_degenerate("")


def test_run_group_writes_health(tiny_models, bundled, tmp_path):
    from memla_core.bench import BenchConfig
    from memla_core.bench.config import resolve_method
    from memla_core.bench.runner import run_group

    lm, fact = tiny_models["llama"], bundled.get("geo-capital-france")
    config = BenchConfig(methods=("ike",), out=tmp_path / "r.csv")
    rows = run_group(lm, fact, "en", resolve_method("ike", lm, config), ["en", "fr"], config, {}, bundled.facts)
    assert {r["health"] for r in rows} <= {"ok"} or all(is_degenerate(r["health"]) for r in rows)
    assert all(r["health"] for r in rows)


# ----------------------------------------------------------------------------- 2. float16 on CPU


def test_float16_on_cpu_is_refused_with_reason(tiny_checkpoints):
    with pytest.raises(ModelLoadError, match="float16 is not supported on the CPU.*NaN"):
        load_model(ModelSpec(str(tiny_checkpoints["gpt2"]), device="cpu", dtype="float16"))


def test_nan_in_unedited_scores_names_dtype_and_device(tiny_checkpoints, bundled):
    lm = load_model(str(tiny_checkpoints["gpt2"]))
    with torch.no_grad():
        lm.model.get_input_embeddings().weight.fill_(float("nan"))
    with pytest.raises(EvaluationError, match=r"NaN scores.*dtype float32 on cpu"):
        evaluate(lm, bundled.get("geo-capital-france"), ["en"])


# ----------------------------------------------------------------------------- 4. results-file names


def test_results_file_name_is_bounded():
    assert check_results_name("gemma-20261202") == "gemma-20261202"
    with pytest.raises(ValueError, match="300 characters; use at most 100"):
        check_results_name("x" * 300)
    with pytest.raises(ValueError, match="only letters, digits"):
        check_results_name("../etc/passwd")


def test_bench_page_survives_a_remembered_overlong_path():
    from app_support.bench_panel import _exists

    assert _exists("/" + "x" * 300 + ".csv") is False  # Path.exists raises ENAMETOOLONG there


def test_run_bench_refuses_overlong_out_before_loading(tmp_path):
    from memla_core.bench import BenchConfig, run_bench

    config = BenchConfig(model=ModelSpec("/nonexistent/model"), out=tmp_path / f"{'r' * 300}.csv")
    with pytest.raises(ValueError, match="300 characters"):
        run_bench(config)


# ----------------------------------------------------------------------------- 5. prompt length


def test_prompt_length_is_bounded(tiny_models, bundled, monkeypatch):
    lm = tiny_models["gpt2"]
    record = fact_to_record(bundled.get("geo-capital-france"))
    record["paraphrase_prompts"]["fr"] = ["mot " * 5000]
    fact = load_mkeb([record]).facts[0]
    start = time.perf_counter()
    with pytest.raises(InputTooLargeError, match=r"paraphrase in 'fr' has \d+ tokens; the limit is 256"):
        check_prompt_lengths(lm.tokenizer, fact, ["en", "fr"])
    assert time.perf_counter() - start < 5
    check_prompt_lengths(lm.tokenizer, fact, ["en"])  # the long prompt is in fr only
    monkeypatch.setenv("MEMLA_MAX_PROMPT_TOKENS", "3")
    with pytest.raises(InputTooLargeError, match="limit is 3"):
        check_prompt_lengths(lm.tokenizer, fact, ["en"])


def test_cli_edit_refuses_long_prompt_before_editing(tiny_checkpoints, capsys):
    argv = ["edit", "--model", str(tiny_checkpoints["gpt2"]), "--fact", "geo-capital-france", "--langs", "en",
            "--max-prompt-tokens", "2"]
    assert main(argv) == 2
    assert "the limit is 2" in capsys.readouterr().err


# ----------------------------------------------------------------------------- 6. model errors


def test_model_errors_name_the_real_cause(tmp_path, tiny_checkpoints):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model("/nonexistent/path")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelLoadError, match="has no config.json"):
        load_model(str(empty))
    no_tokenizer = tmp_path / "no-tokenizer"
    no_tokenizer.mkdir()
    for item in tiny_checkpoints["gpt2"].iterdir():
        if "token" not in item.name and item.name not in ("vocab.json", "merges.txt"):
            (no_tokenizer / item.name).write_bytes(item.read_bytes())
    with pytest.raises(ModelLoadError, match="has no tokenizer files"):
        load_model(str(no_tokenizer))


def test_unknown_hub_id_fails_at_once_offline(monkeypatch, tmp_path):
    monkeypatch.delenv("MEMLA_ALLOW_DOWNLOAD", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    start = time.perf_counter()
    with pytest.raises(ModelLoadError, match="not in the Hugging Face cache, and downloads are off.*--allow-download"):
        load_model("memla-tests/no-such-model")
    assert time.perf_counter() - start < 10


# ----------------------------------------------------------------------------- 7. errors name their subject


def test_set_with_bad_value_names_the_field(tiny_checkpoints, capsys):
    argv = ["edit", "--model", str(tiny_checkpoints["gpt2"]), "--fact", "geo-capital-france", "--langs", "en",
            "--method", "ft", "--set", "steps=abc"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "steps" in err and "abc" in err


def test_non_utf8_dataset_names_the_file(tmp_path):
    path = tmp_path / "latin1.json"
    path.write_bytes('[{"example_id": "1", "relation": "Küche"}]'.encode("latin-1"))
    with pytest.raises(DatasetError, match=r"(?s)latin1\.json.*not UTF-8"):
        load_mkeb(path)


def test_oversized_dataset_is_refused_before_reading(tmp_path, monkeypatch):
    path = tmp_path / "big.json"
    path.write_text("[" + " " * (2 * 2**20) + "]")
    monkeypatch.setenv("MEMLA_MAX_DATASET_MB", "1")
    with pytest.raises(InputTooLargeError, match="big.json is 2 MB.*limit is 1 MB"):
        load_mkeb(path)


# ----------------------------------------------------------------------------- 8. output paths


def test_edit_out_in_missing_folder_fails_before_computing(monkeypatch, capsys):
    import memla_core.cli.common as common

    def no_model(*_args, **_kwargs):
        raise AssertionError("the model was loaded although --out cannot be written")

    monkeypatch.setattr(common, "load_model", no_model)
    assert main(["edit", "--fact", "geo-capital-france", "--out", "/nonexistent/dir/r.json"]) == 2
    assert "the folder /nonexistent/dir does not exist" in capsys.readouterr().err


def test_failed_write_keeps_the_result(tmp_path):
    target = tmp_path / "gone" / "r.json"

    def write(path: Path) -> None:
        path.write_text('{"ES": 100}', encoding="utf-8")

    with pytest.raises(KeptResultError) as err:
        write_or_keep(target, write)
    kept = err.value.kept
    try:
        assert str(kept) in str(err.value) and kept.suffix == ".json"
        assert json.loads(kept.read_text()) == {"ES": 100}
    finally:
        kept.unlink()


# ----------------------------------------------------------------------------- 9. partial languages


def _partial_record(bundled) -> dict:
    record = fact_to_record(next(f for f in bundled if any(b.multi_hop_questions for b in f.languages.values())))
    codes = [c for c in record["edit"] if c in record.get("multi_hop_questions", {})]
    record["multi_hop_questions"].pop(codes[1])
    record["paraphrase_prompts"].pop(codes[1])
    return record, codes[1]


def test_partial_languages_are_accepted_with_a_count(bundled, tiny_models):
    record, missing = _partial_record(bundled)
    dataset = load_mkeb([record])
    block = dataset.facts[0].in_language(missing)
    assert block.multi_hop_questions == () and block.paraphrase_prompts == ()
    assert any("multi_hop_questions missing in 1" in n and "QS is n/a" in n for n in dataset.notes)
    assert any("paraphrase_prompts missing in 1" in n and "PS is n/a" in n for n in dataset.notes)
    row = evaluate(tiny_models["gpt2"], dataset.facts[0], [missing]).summary.iloc[0]
    assert math.isnan(row.QS) and math.isnan(row.PS)


def test_strict_loading_rejects_partial_languages_and_suggests_empty_list(bundled, tmp_path, capsys):
    record, missing = _partial_record(bundled)
    with pytest.raises(DatasetError, match=rf"multi_hop_questions\.{missing}: missing language.*give \[\]"):
        load_mkeb([record], strict=True)
    path = tmp_path / "partial.json"
    path.write_text(json.dumps([record]), encoding="utf-8")
    assert main(["facts", "--dataset", str(path), "--strict"]) == 2
    assert main(["facts", "--dataset", str(path), "--stats"]) == 0
    assert "QS is n/a" in capsys.readouterr().err


# ----------------------------------------------------------------------------- 10. results-file lock


def test_second_writer_is_refused_with_pid_and_start_time(tmp_path):
    out = tmp_path / "r.csv"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock.acquire(out, owner=holder.pid)
        with pytest.raises(lock.ResultsLockedError, match=rf"PID {holder.pid}, started \d{{4}}-\d\d-\d\d"):
            lock.acquire(out)
    finally:
        holder.kill()
        holder.wait()
    # The holder is dead now: its lock is stale and taken over.
    taken = lock.acquire(out)
    assert taken.pid == os.getpid()
    lock.release(out)
    assert not lock.lock_path(out).exists()


def test_workers_of_one_launch_share_the_lock(tmp_path):
    out = tmp_path / "r.csv"
    main_worker = lock.acquire(out, owner=os.getpid())
    assert lock.acquire(out, owner=os.getpid()) == main_worker  # another worker of the same launcher
    lock.release(out, owner=12345678)  # not the holder: left alone
    assert lock.lock_path(out).exists()
    lock.release(out)


def test_bench_run_is_refused_while_another_holds_the_file(tmp_path):
    from memla_core.bench import BenchConfig, run_bench

    out = tmp_path / "r.csv"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock.acquire(out, owner=holder.pid)
        config = BenchConfig(model=ModelSpec("/nonexistent/model"), out=out)  # refused before loading
        with pytest.raises(lock.ResultsLockedError, match=f"PID {holder.pid}"):
            run_bench(config)
    finally:
        holder.kill()
        holder.wait()


# ----------------------------------------------------------------------------- 11. app wording


def test_uploaded_cut_off_csv_is_reported_not_just_logged():
    text = "fact_id,method,source_lang,target_lang,ES\na,memla,en,en,100\na,memla,en,fr,5"
    frame = parse_results(text, "upload.csv")
    assert len(frame) == 1 and frame.attrs[CUT_OFF_LINE] == "a,memla,en,fr,5"


def test_wrong_columns_upload_message_is_in_app_terms():
    from app_support.bench_panel import UPLOAD_FIX

    with pytest.raises(ValueError) as err:
        parse_results("name,score\nx,1\n", "mine.csv", fix=UPLOAD_FIX)
    assert "not a memla bench results file" in str(err.value) and "--out" not in str(err.value)
    assert "upload" in str(err.value)


# ----------------------------------------------------------------------------- the table


def _doc_cases() -> list[dict[str, str]]:
    """Rows of the table under '## Fault cases' (the document has other tables before it)."""
    text = RELIABILITY_DOC.read_text(encoding="utf-8").split("## Fault cases", 1)[1]
    lines = [l for l in text.splitlines() if l.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = []
    for line in lines[2:]:
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        assert len(cells) == len(header), f"malformed row: {line}"
        rows.append(dict(zip(header, cells)))
    return rows


def test_every_fault_case_has_a_test():
    cases = _doc_cases()
    assert {c["Issue item"] for c in cases} >= {str(i) for i in range(1, 12)}
    sources = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "tests").rglob("test_*.py"))
    for case in cases:
        assert case["Expected answer"], case
        names = re.findall(r"`(test_\w+)`", case["Regression test"])
        assert names, f"case {case['Case']} names no regression test"
        for name in names:
            assert re.search(rf"def {name}\(", sources), f"{name} (case {case['Case']}) is not a test in tests/"


def test_health_probes_batched_match_a_plain_forward_and_a_shared_base(tiny_models, bundled):
    from memla_core.health import HEALTH_PROMPTS, capture_reference

    lm, fact = tiny_models["llama"], bundled.get("geo-capital-france")
    reference = capture_reference(lm, fact, ["en", "zh", "fr"])
    text = fact.in_language("zh").edit.filled()
    ids = lm.tokenizer(text)["input_ids"]
    with torch.no_grad():
        logits = lm.model(input_ids=torch.tensor([ids])).logits[0].float().log_softmax(-1)
    expected = logits[:-1].gather(1, torch.tensor(ids[1:])[:, None])[:, 0]
    assert torch.allclose(reference.edit_prompts["zh"].token_logprobs, expected, atol=1e-4)
    first = reference.ordinary[0]
    ids = lm.tokenizer(HEALTH_PROMPTS[0])["input_ids"]
    with torch.no_grad():
        logits = lm.model(input_ids=torch.tensor([ids])).logits[0].float().log_softmax(-1)
    assert torch.allclose(first.logprobs, logits, atol=1e-4)
    # Another fact's reference lends its ordinary sentences; the verdict is the one a fresh capture gives.
    other = bundled.get("geo-language-brazil")
    lent = capture_reference(lm, other, ["en", "fr"], base=reference)
    assert lent.ordinary is reference.ordinary
    edit = _wrecking_edit(lm, other.example_id)
    fresh = edit_health(lm, edit, other, ["en", "fr"])
    reused = edit_health(lm, edit, other, ["en", "fr"], reference=lent)
    assert reused.drift_kl == pytest.approx(fresh.drift_kl, rel=1e-5)
    assert reused.fluency_increase == pytest.approx(fresh.fluency_increase, rel=1e-5, abs=1e-5)
