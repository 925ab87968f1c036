"""Wall time of the demo path on a bundled fact: pick fact → neurons → MEMLA edit → 12-language
evaluation (and the edit's health check), with and without the shipped attributions.

Both runs start from an empty neuron cache; "computed" hides the shipped bundle, so its neuron
search runs integrated gradients as a new user's did before attributions were shipped; "shipped"
reads them. The steps are the Edit page's (memla_core.session), interleaved fact by fact in one
process so that machine noise hits both alike.

    python benchmarks/instant_neurons.py [--facts geo-capital-france,geo-language-brazil] [--shipped-only]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import memla_core.neurons as neurons
from memla_core.data import load_bundled
from memla_core.editing import EditRequest
from memla_core.models import load_model
from memla_core.neurons import NeuronConfig
from memla_core.session import check_edit_health, compute_edit, compute_neurons, evaluate_fact


def demo_path(lm, fact, shipped: bool) -> dict[str, float]:
    """Seconds per step of one pick-fact-to-results run, on an empty disk cache."""
    real_load, real_cache_dir = neurons.load_bundle, neurons.cache_dir
    with tempfile.TemporaryDirectory() as empty:
        neurons.cache_dir = lambda: Path(empty)  # an empty on-disk neuron cache for this run
        neurons.load_bundle = real_load if shipped else (lambda key: None)
        try:
            langs = list(fact.language_codes)
            times: dict[str, float] = {}
            start = time.perf_counter()
            before = evaluate_fact(lm, fact, langs, None, "en")
            times["before"] = time.perf_counter() - start
            t = time.perf_counter()
            found = compute_neurons(lm, fact, "en", NeuronConfig())
            times["neurons"] = time.perf_counter() - t
            t = time.perf_counter()
            edit = compute_edit(lm, EditRequest(fact, "en"), "memla", None, found)
            times["edit"] = time.perf_counter() - t
            t = time.perf_counter()
            after = evaluate_fact(lm, fact, langs, edit, "en")
            check_edit_health(lm, fact, edit, langs)
            times["after"] = time.perf_counter() - t
            times["total"] = time.perf_counter() - start
            assert len(before.summary) == len(after.summary) == len(langs)
            return times
        finally:
            neurons.load_bundle, neurons.cache_dir = real_load, real_cache_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--facts", default="geo-capital-france,geo-language-brazil")
    parser.add_argument("--shipped-only", action="store_true",
                        help="time only the path with shipped attributions (no integrated gradients)")
    args = parser.parse_args()
    lm = load_model()
    data = load_bundled()
    runs: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    for fact_id in args.facts.split(","):
        fact = data.get(fact_id)
        for shipped in (True,) if args.shipped_only else (False, True):
            times = demo_path(lm, fact, shipped)
            runs[shipped].append(times)
            label = "shipped " if shipped else "computed"
            print(f"{fact_id:28s} {label}  " + "  ".join(f"{k} {v:6.1f}s" for k, v in times.items()), flush=True)
    shipped = statistics.median(t["total"] for t in runs[True])
    if args.shipped_only:
        steps = {k: statistics.median(t[k] for t in runs[True]) for k in runs[True][0]}
        print("\nmedian pick-fact → results with shipped attributions: " + ", ".join(f"{k} {v:.1f} s" for k, v in steps.items()))
        return
    computed = statistics.median(t["total"] for t in runs[False])
    neurons_computed = statistics.median(t["neurons"] for t in runs[False])
    neurons_shipped = statistics.median(t["neurons"] for t in runs[True])
    print(f"\nmedian pick-fact → results: computed neurons {computed:.1f} s, shipped {shipped:.1f} s "
          f"({computed / shipped:.2f}× faster); neuron search alone {neurons_computed:.1f} s → {neurons_shipped:.2f} s")


if __name__ == "__main__":
    main()
