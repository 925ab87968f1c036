"""Fault injection, end to end on the default model: the cases of docs/reliability.md.

Each case runs the real entry point (``memla`` in-process, or the library call the app makes) and
is sorted by its outcome:

* **clear**: the answer the table expects — a refusal whose message names the cause, or a result
  flagged as it should be (a degenerate edit, an accepted dataset with its missing parts counted);
* **crash**: an exception escaping, or an error whose message does not name the cause;
* **silent wrong**: the run ends without the expected refusal or flag (or flags a sound edit);
* **data lost**: a computed result that is nowhere on disk afterwards.

One model is loaded and reused by every case (``memla`` subcommands are called in-process with
the model loader pointed at it), so the whole run takes a few minutes on a laptop CPU, mostly the
two destroyed edits and one sound one.

    python benchmarks/fault_injection.py            # every case
    python benchmarks/fault_injection.py --only model-   # cases whose name starts so
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from memla_core import models  # noqa: E402
from memla_core.bench import lock  # noqa: E402
from memla_core.bench import runner as bench_runner  # noqa: E402
from memla_core.bench.store import CUT_OFF_LINE, parse_results  # noqa: E402
from memla_core.bounds import check_results_name  # noqa: E402
from memla_core.cli import common as cli_common  # noqa: E402
from memla_core.cli import edit as cli_edit  # noqa: E402
from memla_core.cli import main  # noqa: E402
from memla_core.data import load_bundled  # noqa: E402
from memla_core.data.loader import fact_to_record  # noqa: E402
from memla_core.evaluation import EvaluationError, evaluate  # noqa: E402

FACT = "geo-capital-france"


@dataclass
class Outcome:
    kind: str  # clear | crash | silent | lost
    detail: str


class Harness:
    """The shared model, a scratch folder, and ``memla`` run in-process with captured output."""

    def __init__(self, work: Path):
        self.work = work
        self.lm = models.load_model(models.ModelSpec(models.DEFAULT_MODEL, device="cpu"))
        self.loads = 0
        real = models.load_model

        def reuse(spec=models.ModelSpec(), progress=None):
            spec = models.ModelSpec(spec) if isinstance(spec, str) else spec
            self.loads += 1
            shared = models.ModelSpec(models.DEFAULT_MODEL, device="cpu")
            if (spec.name_or_path, spec.dtype, spec.resolved_device()) == (shared.name_or_path, shared.dtype, "cpu"):
                return self.lm
            return real(spec, progress)

        cli_common.load_model = reuse
        bench_runner.load_model = reuse

    def memla(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(argv))
        return code, out.getvalue(), err.getvalue()

    def dataset_file(self, name: str, records: list[dict]) -> Path:
        path = self.work / name
        path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
        return path


def expect_error(result: tuple[int, str, str], *needles: str, code: int = 2) -> Outcome:
    rc, out, err = result
    message = err.split("memla: error:", 1)[-1].strip()[:300]
    if rc == 0:
        return Outcome("silent", f"exit 0, expected a refusal naming {needles}")
    if rc != code or not all(n in err for n in needles):
        return Outcome("crash", f"exit {rc}: {message!r} does not say {needles}")
    return Outcome("clear", message.splitlines()[0][:160] if message else f"exit {rc}")


def expect_raise(call: Callable[[], object], error: type[BaseException], *needles: str) -> Outcome:
    try:
        call()
    except error as err:
        text = str(err)
        if all(n in text for n in needles):
            return Outcome("clear", text.splitlines()[0][:160])
        return Outcome("crash", f"{type(err).__name__}: {text[:200]!r} does not say {needles}")
    return Outcome("silent", f"no {error.__name__} raised")


# ----------------------------------------------------------------------------- cases


def destroyed_memla(h: Harness) -> Outcome:
    out = h.work / "lr1e9.json"
    rc, stdout, err = h.memla("edit", "--fact", FACT, "--langs", "en,fr", "--lr", "1e9", "--strict", "--out", str(out))
    if rc != 3 or "degenerate edit" not in err:
        return Outcome("silent", f"exit {rc}, no degenerate warning: {stdout[-300:]}")
    fr = next(r for r in json.loads(out.read_text())["table"] if r["lang"] == "fr")
    if fr["ES"] != 0:
        return Outcome("silent", f"French ES {fr['ES']} with P(new) {fr['P(new)_after']:.3g}")
    return Outcome("clear", err.strip().splitlines()[-1][:160])


def destroyed_ft(h: Harness) -> Outcome:
    rc, stdout, err = h.memla("edit", "--fact", FACT, "--langs", "en,fr", "--method", "ft", "--set", "lr=1e9",
                              "--set", "norm_constraint=inf", "--strict")
    if rc != 3 or "degenerate edit" not in err:
        return Outcome("silent", f"exit {rc}, no degenerate warning: {stdout[-300:]}")
    return Outcome("clear", err.strip().splitlines()[-1][:160])


def sound_edit_not_flagged(h: Harness) -> Outcome:
    rc, stdout, err = h.memla("edit", "--fact", FACT, "--langs", "en,fr", "--method", "ike", "--strict")
    if rc != 0 or "health: ok" not in stdout:
        return Outcome("silent", f"a sound IKE edit was flagged (exit {rc}): {err[-300:]}")
    return Outcome("clear", next(l for l in stdout.splitlines() if l.startswith("health:")))


def float16_cpu(h: Harness) -> Outcome:
    return expect_error(h.memla("edit", "--fact", FACT, "--method", "ike", "--dtype", "float16", "--device", "cpu"),
                        "float16 is not supported on the CPU", "NaN")


def nan_before(h: Harness) -> Outcome:
    weight = h.lm.model.get_input_embeddings().weight
    saved = weight.detach().clone()
    try:
        with torch.no_grad():
            weight.fill_(float("nan"))
        return expect_raise(lambda: evaluate(h.lm, load_bundled().get(FACT), ["en"]), EvaluationError,
                            "NaN", "float32", "cpu")
    finally:
        with torch.no_grad():
            weight.copy_(saved)


def long_results_name(h: Harness) -> Outcome:
    first = expect_raise(lambda: check_results_name("r" * 300), ValueError, "300 characters")
    if first.kind != "clear":
        return first
    return expect_error(h.memla("bench", "--methods", "ike", "--limit", "1", "--out", str(h.work / f"{'r' * 300}.csv")),
                        "300 characters")


def long_prompt(h: Harness) -> Outcome:
    record = fact_to_record(load_bundled().get(FACT))
    record["paraphrase_prompts"]["fr"] = ["mot " * 5000]
    path = h.dataset_file("long.json", [record])
    start = time.perf_counter()
    outcome = expect_error(h.memla("edit", "--dataset", str(path), "--fact", FACT, "--langs", "en,fr", "--method", "ike"),
                           "tokens; the limit is 256")
    if outcome.kind == "clear" and time.perf_counter() - start > 60:
        return Outcome("crash", f"refused only after {time.perf_counter() - start:.0f} s")
    return outcome


def model_missing_folder(h: Harness) -> Outcome:
    return expect_error(h.memla("edit", "--fact", FACT, "--model", "/nonexistent/path"), "does not exist")


def model_empty_folder(h: Harness) -> Outcome:
    folder = h.work / "empty-model"
    folder.mkdir(exist_ok=True)
    return expect_error(h.memla("edit", "--fact", FACT, "--model", str(folder)), "has no config.json")


def model_no_tokenizer(h: Harness) -> Outcome:
    folder = h.work / "no-tokenizer"
    folder.mkdir(exist_ok=True)
    shutil.copy(Path(h.lm.source_path) / "config.json", folder / "config.json")
    return expect_error(h.memla("edit", "--fact", FACT, "--model", str(folder)), "has no tokenizer files")


def model_unknown_hub_id(h: Harness) -> Outcome:
    start = time.perf_counter()
    outcome = expect_error(h.memla("edit", "--fact", FACT, "--model", "memla-faults/no-such-model"),
                           "downloads are off", "--allow-download")
    if outcome.kind == "clear" and time.perf_counter() - start > 15:
        return Outcome("crash", f"failed only after {time.perf_counter() - start:.0f} s")
    return outcome


def set_bad_value(h: Harness) -> Outcome:
    return expect_error(h.memla("edit", "--fact", FACT, "--method", "ft", "--set", "steps=abc"), "steps", "abc")


def dataset_not_utf8(h: Harness) -> Outcome:
    path = h.work / "latin1.json"
    path.write_bytes('[{"example_id": "1", "relation": "Küche"}]'.encode("latin-1"))
    return expect_error(h.memla("facts", "--dataset", str(path)), "latin1.json", "not UTF-8")


def dataset_too_large(h: Harness) -> Outcome:
    path = h.work / "big.json"
    path.write_text("[" + " " * (2 * 2**20) + "]")
    os.environ["MEMLA_MAX_DATASET_MB"] = "1"
    try:
        return expect_error(h.memla("facts", "--dataset", str(path)), "big.json", "limit is 1 MB")
    finally:
        del os.environ["MEMLA_MAX_DATASET_MB"]


def out_missing_folder(h: Harness) -> Outcome:
    before, start = h.loads, time.perf_counter()
    outcome = expect_error(h.memla("edit", "--fact", FACT, "--out", "/nonexistent/dir/r.json"), "does not exist")
    if outcome.kind == "clear" and (h.loads != before or time.perf_counter() - start > 10):
        return Outcome("crash", "refused only after loading the model")
    return outcome


def out_write_fails(h: Harness) -> Outcome:
    folder = h.work / "vanishing"
    folder.mkdir(exist_ok=True)
    target = folder / "r.json"
    real = cli_edit.write_results

    def disk_goes_away(path, *args, **kwargs):
        if Path(path) == target:
            shutil.rmtree(folder, ignore_errors=True)  # the folder disappears during the computation
        return real(path, *args, **kwargs)

    cli_edit.write_results = disk_goes_away
    try:
        rc, _, err = h.memla("edit", "--fact", FACT, "--langs", "en", "--method", "ike", "--out", str(target))
    finally:
        cli_edit.write_results = real
    kept = [w.rstrip(".") for w in err.split() if w.startswith(tempfile.gettempdir()) and "memla-result-" in w]
    if not kept or not Path(kept[0]).exists():
        return Outcome("lost", f"exit {rc}, no kept result: {err[-300:]}")
    table = json.loads(Path(kept[0]).read_text())["table"]
    Path(kept[0]).unlink()
    if rc != 2 or not table:
        return Outcome("crash", f"exit {rc}")
    return Outcome("clear", err.split("memla: error:", 1)[-1].strip().splitlines()[0][:160])


def _partial_dataset(h: Harness) -> tuple[Path, str]:
    fact = load_bundled().get(FACT)
    record = fact_to_record(fact)
    missing = next(c for c in record.get("multi_hop_questions", {}) if c != "en")
    record["multi_hop_questions"].pop(missing)
    return h.dataset_file("partial.json", [record]), missing


def partial_languages(h: Harness) -> Outcome:
    path, missing = _partial_dataset(h)
    rc, out, err = h.memla("facts", "--dataset", str(path), "--stats")
    if rc != 0 or "multi_hop_questions missing in 1" not in err:
        return Outcome("silent", f"exit {rc}: no count of what is missing ({err[-200:]})")
    json_out = h.work / "partial-edit.json"
    rc, out, err = h.memla("edit", "--dataset", str(path), "--fact", FACT, "--langs", f"en,{missing}",
                           "--method", "ike", "--out", str(json_out))
    if rc != 0:
        return Outcome("crash", f"edit on the partial dataset: exit {rc} {err[-200:]}")
    row = next(r for r in json.loads(json_out.read_text())["table"] if r["lang"] == missing)
    if row["QS"] is not None:
        return Outcome("silent", f"QS {row['QS']} in {missing}, which has no multi-hop questions")
    return Outcome("clear", f"accepted; {missing} QS n/a; note counts 1 missing pair")


def partial_languages_strict(h: Harness) -> Outcome:
    path, missing = _partial_dataset(h)
    return expect_error(h.memla("facts", "--dataset", str(path), "--strict"), f"multi_hop_questions.{missing}", "[]")


def second_writer(h: Harness) -> Outcome:
    out = h.work / "locked.csv"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        lock.acquire(out, owner=holder.pid)
        return expect_error(h.memla("bench", "--methods", "ike", "--limit", "1", "--target-langs", "en", "--out", str(out)),
                            f"PID {holder.pid}", "started")
    finally:
        holder.kill()
        holder.wait()


def stale_lock(h: Harness) -> Outcome:
    out = h.work / "locked.csv"  # the holder of second_writer is dead now; run alone, a dead PID is made
    if not lock.lock_path(out).exists():
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        lock.acquire(out, owner=dead.pid)
    rc, stdout, err = h.memla("bench", "--methods", "ike", "--limit", "1", "--target-langs", "en", "--out", str(out))
    if rc != 0:
        return Outcome("crash", f"stale lock not taken over: exit {rc} {err[-200:]}")
    rows = out.read_text().strip().splitlines()
    if len(rows) < 2 or lock.lock_path(out).exists():
        return Outcome("lost", "no rows written, or the lock was left behind")
    return Outcome("clear", f"stale lock taken over; {len(rows) - 1} row(s) written; lock released")


def upload_cut_off(h: Harness) -> Outcome:
    frame = parse_results("fact_id,method,source_lang,target_lang,ES\na,ike,en,en,100\na,ike,en,fr,5", "upload.csv")
    if frame.attrs.get(CUT_OFF_LINE) != "a,ike,en,fr,5":
        return Outcome("silent", "the dropped line is not reported to the page")
    return Outcome("clear", "dropped line kept for the page's warning")


def upload_wrong_columns(h: Harness) -> Outcome:
    from app_support.bench_panel import UPLOAD_FIX

    outcome = expect_raise(lambda: parse_results("name,score\nx,1\n", "mine.csv", fix=UPLOAD_FIX), ValueError,
                           "not a memla bench results file", "upload")
    if outcome.kind == "clear" and "--out" in outcome.detail:
        return Outcome("crash", "the app's message still names --out")
    return outcome


CASES: dict[str, Callable[[Harness], Outcome]] = {
    "destroyed-memla": destroyed_memla,
    "destroyed-ft": destroyed_ft,
    "sound-edit-not-flagged": sound_edit_not_flagged,
    "float16-cpu": float16_cpu,
    "nan-before": nan_before,
    "long-results-name": long_results_name,
    "long-prompt": long_prompt,
    "model-missing-folder": model_missing_folder,
    "model-empty-folder": model_empty_folder,
    "model-no-tokenizer": model_no_tokenizer,
    "model-unknown-hub-id": model_unknown_hub_id,
    "set-bad-value": set_bad_value,
    "dataset-not-utf8": dataset_not_utf8,
    "dataset-too-large": dataset_too_large,
    "out-missing-folder": out_missing_folder,
    "out-write-fails": out_write_fails,
    "partial-languages": partial_languages,
    "partial-languages-strict": partial_languages_strict,
    "second-writer": second_writer,
    "stale-lock": stale_lock,
    "upload-cut-off": upload_cut_off,
    "upload-wrong-columns": upload_wrong_columns,
}


def main_script() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="run the cases whose name starts with this")
    args = parser.parse_args()
    os.environ.pop("MEMLA_ALLOW_DOWNLOAD", None)
    counts = {"clear": 0, "crash": 0, "silent": 0, "lost": 0}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="memla-faults-") as tmp:
        harness = Harness(Path(tmp))
        for name, case in CASES.items():
            if not name.startswith(args.only):
                continue
            t0 = time.perf_counter()
            try:
                outcome = case(harness)
            except Exception as err:  # noqa: BLE001 - an escaping exception is what this script counts
                outcome = Outcome("crash", f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=3)}")
            counts[outcome.kind] += 1
            print(f"{outcome.kind:>6}  {name:<26} {time.perf_counter() - t0:6.1f} s  {outcome.detail}", flush=True)
    print()
    print(f"cases tried: {sum(counts.values())}")
    print(f"clear errors: {counts['clear']}")
    print(f"crashes: {counts['crash']}")
    print(f"silent wrong results: {counts['silent']}")
    print(f"data lost: {counts['lost']}")
    print(f"({time.perf_counter() - started:.0f} s)")
    return 0 if counts["crash"] == counts["silent"] == counts["lost"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main_script())
