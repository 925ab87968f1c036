"""Seconds to measure one model state's general ability (probe + drift), against unbatched scoring.

One state = the probe (both tasks, every language) and drift against a drift reference that is
already cached: the cost each edit adds. The baselines, timed in the same run so that a busy
machine slows all of them alike, are (a) the same measurement with one sequence per forward
pass (what batching buys) and (b) one 12-language ``evaluate`` of a fact (the check every edit
already pays). Run at each thread count given, e.g. ``--threads 2,1``.

    python benchmarks/ability_speed.py [--items 5] [--sentences 5] [--threads 2,1] [--model gemma3-270m]
"""

from __future__ import annotations

import argparse
import time

import torch

from memla_core.ability import AbilityConfig, load_bundled_probe, load_sentences, measure_ability, measure_unedited
from memla_core.cli.ability import QUICK_ITEMS, QUICK_SENTENCES
from memla_core.data import load_bundled
from memla_core.evaluation import evaluate
from memla_core.models import load_model


def _count(value: str) -> int | None:
    return None if value == "all" else int(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument("--items", default=str(QUICK_ITEMS), help="items per task and language, or 'all'")
    parser.add_argument("--sentences", default=str(QUICK_SENTENCES), help="sentences per language, or 'all'")
    parser.add_argument("--threads", default=str(torch.get_num_threads()), help="torch thread counts, comma-separated")
    parser.add_argument("--no-unbatched", action="store_true", help="skip the one-sequence-at-a-time baseline")
    args = parser.parse_args()
    lm = load_model(args.model)
    probe, sentences = load_bundled_probe(), load_sentences()
    fact = load_bundled().facts[0]
    config = AbilityConfig(items_per_task=_count(args.items), sentences_per_language=_count(args.sentences))
    unbatched = AbilityConfig(items_per_task=config.items_per_task, sentences_per_language=config.sentences_per_language,
                              batch_size=1)
    n_items = len(probe.subset(None, config.items_per_task))
    n_sentences = sum(len(v[: config.sentences_per_language]) for v in sentences.values())
    print(f"{args.model}: {n_items} probe items and {n_sentences} sentences in {len(probe.languages)} languages per state")
    print(f"{'threads':>7} {'reference s':>11} {'state s':>8} {'unbatched s':>11} {'ratio':>6} {'evaluate s':>10} "
          f"{'state/evaluate':>14}")
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        t0 = time.perf_counter()
        _, reference = measure_unedited(lm, probe, sentences, config)
        t1 = time.perf_counter()
        report = measure_ability(lm, probe, reference, config=config)
        t2 = time.perf_counter()
        slow = float("nan")  # stays NaN with --no-unbatched
        if not args.no_unbatched:
            measure_ability(lm, probe, reference, config=unbatched)
            slow = time.perf_counter() - t2
        t3 = time.perf_counter()
        evaluate(lm, fact)
        t4 = time.perf_counter()
        state = t2 - t1
        assert report.mean_drift < 1e-6, "the unedited model drifted from its own reference"
        print(f"{threads:7d} {t1 - t0:11.1f} {state:8.1f} {slow:11.1f} {slow / state:6.1f} "
              f"{t4 - t3:10.1f} {state / (t4 - t3):14.1f}")


if __name__ == "__main__":
    main()
