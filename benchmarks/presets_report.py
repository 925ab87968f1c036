"""The test-split report: every method under its paper and its tuned preset, edits written in
English and in Chinese (the paper's Tables 3 and 4), as the markdown table in docs/benchmarks.md.

    memla bench --split test --per-relation 1 --limit 6 --source-langs en,zh --preset paper \
        --methods memla,ft,rome,memit,pmet,ike --out test_paper.csv
    memla bench ... --preset tuned --methods <the methods with tuned values> --out test_tuned.csv
    python benchmarks/presets_report.py test_paper.csv test_tuned.csv

A method missing from the tuned file has no tuned values for the model (tuned = paper): its
paper row stands for both. Columns are those of ``memla sweep`` (``bench.tuning.sweep_summary``)
on the facts every row of one source language finished: source-language ES, cross-lingual
averages pooled over pairs (raw ES, ES on the pairs the unedited model knew with their count, NS
and NS change) and seconds per edit.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from memla_core.bench.store import read_all
from memla_core.bench.tuning import sweep_summary
from memla_core.editing import METHODS

COLUMNS = {
    "facts": "facts", "degenerate": "degenerate", "en_en_ES": "{s}-{s} ES", "avg_ES": "{s}-avg ES",
    "avg_ES_known": "{s}-avg ES known", "n_known": "known pairs", "avg_NS": "{s}-avg NS",
    "avg_NS_change": "NS change", "seconds_per_edit": "s/edit",
}


def labelled(paper: pd.DataFrame, tuned: pd.DataFrame) -> pd.DataFrame:
    """Both files' rows with ``method`` relabelled ``<method> (paper|tuned)``."""
    frames = []
    for preset, frame in (("paper", paper), ("tuned", tuned)):
        if frame.empty:
            continue
        frame = frame.copy()
        frame["method"] = frame["method"] + f" ({preset})"
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def report(paper: pd.DataFrame, tuned: pd.DataFrame, source: str) -> pd.DataFrame:
    rows = labelled(paper, tuned)
    summary = sweep_summary(rows, source)
    tuned_methods = set(tuned["method"]) if not tuned.empty else set()
    out = []
    for method in dict.fromkeys(paper["method"]):
        title = METHODS[method].title if method in METHODS else method
        for preset in ("paper", "tuned"):
            if preset == "tuned" and method not in tuned_methods:
                continue
            found = summary[summary["config"] == f"{method} ({preset})"]
            if found.empty:
                continue
            cells = {label.format(s=source): found.iloc[0][key] for key, label in COLUMNS.items()}
            preset_label = preset if method in tuned_methods else "paper = tuned"
            out.append({"method": title, "preset": preset_label, **cells})
    return pd.DataFrame(out)


def markdown(table: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    for row in table.itertuples(index=False):
        cells = [f"{v:.1f}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def read_files(paths: str) -> pd.DataFrame:
    """The rows of every existing file in a comma-separated list (one run per method group)."""
    frames = [read_all(Path(p)) for p in paths.split(",") if p.strip() and Path(p).exists()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["method"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paper", help="results of `memla bench --preset paper` (several files: comma-separated)")
    parser.add_argument("tuned", help="results of `memla bench --preset tuned` (methods with tuned values; "
                        "comma-separated files)")
    parser.add_argument("--sources", default="en,zh")
    parser.add_argument("--common-facts", action="store_true",
                        help="only the facts every method finished (e.g. a slow method ran on fewer of them)")
    args = parser.parse_args()
    paper = read_files(args.paper)
    tuned = read_files(args.tuned)
    if args.common_facts:
        shared = set.intersection(*(set(g["fact_id"]) for frame in (paper, tuned) if not frame.empty
                                    for _, g in frame.groupby("method")))
        paper, tuned = (frame[frame["fact_id"].isin(shared)] if not frame.empty else frame for frame in (paper, tuned))
        print(f"facts every method finished: {len(shared)} ({', '.join(sorted(shared))})")
    for source in [s.strip() for s in args.sources.split(",") if s.strip()]:
        table = report(paper, tuned, source)
        print(f"\n### Edits written in {source}\n")
        print(markdown(table) if not table.empty else f"(no rows with source language {source})")


if __name__ == "__main__":
    main()
