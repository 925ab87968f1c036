"""MEMLA against the baselines on the bundled facts: edit in English, evaluate in all 12 languages.

    MEMLA_CACHE=/tmp/memla-cache python benchmarks/methods_compare.py --limit 20

For every method (``--methods``, default memla, ft, rome, memit, pmet, ike) and each of the
first ``--limit`` bundled facts: compute the edit from the unedited default model, apply it,
evaluate ES/PS/NS in every language of the fact, revert. Prints, per method, the en-en and
en-avg (mean over the other 11 languages) ES/PS/NS in percent and the seconds per edit
(``edit_s``: ``compute``; ``prep_s``: MEMLA's knowledge-neuron search, cached on disk, so 0 on
a second run). Baselines use their per-architecture defaults (``default_config``). A fact whose
edit fails is counted in ``failed`` and left out of the means.
"""

from __future__ import annotations

import argparse
import logging
import time

import pandas as pd
import torch

from memla_core.data import load_bundled
from memla_core.editing import METHODS, EditError, EditRequest, MemlaConfig, MemlaEditor, default_config
from memla_core.evaluation import evaluate
from memla_core.models import load_model
from memla_core.neurons import find_neurons

log = logging.getLogger("methods_compare")
SOURCE = "en"
METRICS = ("ES", "PS", "NS")


def make_editor(method: str, lm, fact) -> tuple[object, float]:
    """The editor for one fact and the seconds spent preparing it (MEMLA's neuron search)."""
    if method == "memla":
        config = MemlaConfig()
        start = time.perf_counter()
        neurons = find_neurons(lm, fact, SOURCE, config.neurons)
        return MemlaEditor(config, neurons=neurons), time.perf_counter() - start
    return METHODS[method].editor_cls(default_config(method, lm)), 0.0


def run(methods: list[str], limit: int) -> pd.DataFrame:
    lm = load_model()
    facts = [f for f in load_bundled().facts if SOURCE in f.languages][:limit]
    rows = []
    for method in methods:
        for n, fact in enumerate(facts, 1):
            log.info("%s: fact %d/%d (%s)", method, n, len(facts), fact.example_id)
            editor, prep = make_editor(method, lm, fact)
            try:
                edit = editor.compute(lm, EditRequest(fact, SOURCE))
            except EditError as err:
                log.warning("%s failed on %s: %s", method, fact.example_id, err)
                rows.append({"method": method, "fact": fact.example_id, "failed": 1})
                continue
            with edit.applied(lm):
                report = evaluate(lm, fact, list(fact.language_codes), edit=edit)
            summary = report.summary.set_index("target_lang")
            others = summary.drop(index=SOURCE)
            row = {"method": method, "fact": fact.example_id, "failed": 0, "edit_s": edit.seconds, "prep_s": prep}
            for metric in METRICS:
                row[f"en-en {metric}"] = summary.loc[SOURCE, metric]
                row[f"en-avg {metric}"] = others[metric].mean()
            rows.append(row)
    return pd.DataFrame(rows)


def summarise(results: pd.DataFrame, methods: list[str]) -> pd.DataFrame:
    columns = [f"en-en {m}" for m in METRICS] + [f"en-avg {m}" for m in METRICS] + ["edit_s", "prep_s"]
    done = results[results["failed"] == 0]
    table = done.groupby("method")[columns].mean() if not done.empty else pd.DataFrame(columns=columns)
    table["facts"] = done.groupby("method").size()
    table["failed"] = results.groupby("method")["failed"].sum()
    return table.reindex([m for m in methods if m in table.index])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=20, help="first N bundled facts (default 20)")
    parser.add_argument("--methods", default="memla,ft,rome,memit,pmet,ike", help="comma-separated method names")
    parser.add_argument("--csv", help="also write one row per (method, fact) to this CSV file")
    parser.add_argument("--threads", type=int, help="torch CPU threads (1 is fastest on a busy machine)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown method(s) {unknown}; available: {', '.join(METHODS)}")
    results = run(methods, args.limit)
    if args.csv:
        results.to_csv(args.csv, index=False)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(summarise(results, methods).to_string(float_format=lambda x: f"{x:.1f}"))


if __name__ == "__main__":
    main()
