"""General ability after single edits (the paper's §5.5, Figure 5): probe accuracy and drift of
the unedited model and of the model after each method's edit of each fact, one edit at a time.

Every (fact, method) is one JSON line in ``--out``, appended as soon as it is measured, so a
killed run resumes where it stopped. The summary averages over the facts every method finished:
probe accuracy per task (with a 95% bootstrap interval over facts), the change from the unedited
model, drift, and the edits' own success (en-en ES, 12-language average ES, degenerate edits),
so that "ability kept" is not credited to edits that did nothing (``--langs``: where the edit is
scored; en-avg = the mean over those other than English).

    python benchmarks/ability_after_edits.py --methods memla,ft,rome,memit --split test --limit 20 \\
        --items 2 --sentences 2 --langs en,zh,fr,de --out runs/ability_after_edits.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd

from memla_core.ability import AbilityConfig, load_bundled_probe, load_sentences, measure_ability, measure_unedited
from memla_core.ability.items import TASKS
from memla_core.cli.ability import QUICK_ITEMS, QUICK_SENTENCES
from memla_core.data import load_bundled
from memla_core.data.splits import select_split
from memla_core.editing import EditRequest, default_config, method_spec
from memla_core.intervals import bootstrap_interval
from memla_core.models import load_model
from memla_core.neurons import find_neurons
from memla_core.session import check_edit_health, compute_edit, evaluate_fact, health_reference

UNEDITED = "unedited"


def ability_fields(report) -> dict:
    """Accuracies as fractions (``AbilityReport.accuracy``); the summary shows them in %."""
    return {
        **{f"acc_{task}": report.accuracy(task) for task in TASKS},
        "acc_all": report.accuracy(),
        "drift": report.mean_drift,
        "ability_seconds": report.seconds,
    }


def measure(lm, fact, method: str, probe, reference, config: AbilityConfig, fact_health, languages: list[str],
            pool) -> dict:
    """One edit of ``fact`` by ``method`` (paper preset, written in English): its success in
    ``languages``, its health (against ``fact_health``, the fact's unedited health reference) and
    the model's general ability while it is applied (against ``reference``)."""
    spec = method_spec(method)
    method_config = default_config(spec, lm, preset="paper")
    neurons = find_neurons(lm, fact, "en", spec.neuron_config(method_config)) if spec.uses_neurons else None
    started = time.perf_counter()
    edit = compute_edit(lm, EditRequest(fact, "en"), spec.name, method_config, neurons, pool=pool)
    seconds_edit = time.perf_counter() - started
    after = evaluate_fact(lm, fact, languages, edit, "en").summary.set_index("target_lang")
    health = check_edit_health(lm, fact, edit, languages, reference=fact_health)
    with edit.applied(lm):
        report = measure_ability(lm, probe, reference, edit=edit, config=config, label=method)
    return {
        "fact": fact.example_id, "method": spec.name, "seconds_edit": seconds_edit,
        "ES_en": float(after.loc["en", "ES"]), "ES_avg": float(after.drop(index="en")["ES"].mean()),
        "ES_languages": ",".join(languages),
        "degenerate": health.degenerate, **ability_fields(report),
    }


def summary(rows: pd.DataFrame, methods: list[str]) -> pd.DataFrame:
    """Per method, over the facts every method finished: mean accuracy per task [95% CI], change
    from the unedited model, drift, and the edits' success."""
    done = set.intersection(*(set(rows.loc[rows["method"] == m, "fact"]) for m in methods))
    unedited = rows[rows["method"] == UNEDITED].iloc[0]
    lines = []
    for method in [UNEDITED, *methods]:
        mine = rows[rows["method"] == method] if method == UNEDITED else rows[(rows["method"] == method) & rows["fact"].isin(done)]
        line = {"method": method, "facts": len(done) if method != UNEDITED else 0}
        for task in (*TASKS, "all"):
            values = (100 * mine[f"acc_{task}"]).tolist()
            mean = sum(values) / len(values)
            low, high = bootstrap_interval(values)  # one value (the unedited model): no interval
            line[f"{task} acc"] = f"{mean:.1f} [{low:.1f}, {high:.1f}]" if len(values) > 1 else f"{mean:.1f}"
            line[f"{task} Δ"] = f"{mean - 100 * unedited[f'acc_{task}']:+.2f}"
        line["drift (nats)"] = f"{mine['drift'].mean():.4f}"
        if method != UNEDITED:
            line["ES en"] = f"{mine['ES_en'].mean():.1f}"
            line["ES en-avg"] = f"{mine['ES_avg'].mean():.1f}"
            line["degenerate"] = f"{int(mine['degenerate'].sum())}/{len(mine)}"
            line["s/edit"] = f"{mine['seconds_edit'].median():.1f}"
        lines.append(line)
    return pd.DataFrame(lines).fillna("")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default="memla,ft,rome,memit")
    parser.add_argument("--split", default="test", choices=["dev", "test", "all"])
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--items", type=int, default=QUICK_ITEMS, help="probe items per task and language")
    parser.add_argument("--sentences", type=int, default=QUICK_SENTENCES, help="drift sentences per language")
    parser.add_argument("--langs", default="all", help="languages the edits are scored in (comma-separated, or all)")
    parser.add_argument("--out", type=Path, default=Path("ability_after_edits.jsonl"))
    parser.add_argument("--shard", default="0/1", help="i/n: only the facts whose position modulo n is i, so that n "
                        "processes can share one --out (each appends whole lines)")
    parser.add_argument("--summary-only", action="store_true", help="print the summary of --out and stop")
    args = parser.parse_args()
    methods = [method_spec(m).name for m in args.methods.split(",")]
    index, count = (int(part) for part in args.shard.split("/"))
    rows = [json.loads(line) for line in args.out.read_text().splitlines() if line.strip()] if args.out.exists() else []
    rows = list({(r["fact"], r["method"]): r for r in rows}.values())  # a line written twice counts once
    if not args.summary_only:
        lm = load_model()
        probe, sentences = load_bundled_probe(), load_sentences()
        config = AbilityConfig(items_per_task=args.items, sentences_per_language=args.sentences)
        unedited, reference = measure_unedited(lm, probe, sentences, config)
        base = health_reference(lm, None, [])
        if index == 0 and not any(r["method"] == UNEDITED for r in rows):
            rows.append({"fact": "", "method": UNEDITED, **ability_fields(unedited)})
            with args.out.open("a") as out:
                out.write(json.dumps(rows[-1]) + "\n")
        done = {(r["fact"], r["method"]) for r in rows}
        pool = load_bundled().facts
        for fact in select_split(pool, args.split)[: args.limit][index::count]:
            todo = [method for method in methods if (fact.example_id, method) not in done]
            if not todo:
                continue
            wanted = fact.language_codes if args.langs == "all" else args.langs.split(",")
            languages = [lang for lang in wanted if lang in fact.languages]
            fact_health = health_reference(lm, fact, languages, base=base)  # once per fact, every method's
            for method in todo:
                row = measure(lm, fact, method, probe, reference, config, fact_health, languages, pool)
                rows.append(row)
                with args.out.open("a") as out:
                    out.write(json.dumps(row) + "\n")
                print(f"{fact.example_id:32s} {method:6s} edit {row['seconds_edit']:5.1f} s  ES en {row['ES_en']:5.1f}  "
                      f"acc {100 * row['acc_all']:5.1f}  drift {row['drift']:.4f}", flush=True)
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(summary(pd.DataFrame(rows), methods).to_string(index=False))


if __name__ == "__main__":
    main()
