"""Benchmark rows -> the paper's tables, as DataFrames shaped like ``assets/paper/*.csv``.

Every function here is pure (rows in, table out) except ``write_summaries``. Averages follow the
paper: a cell is the mean over facts of one (method, source, target); ``<src>-avg`` is the plain
mean of the cross-lingual cells (targets other than the source), not a mean over all rows. Failed
edits (rows with an ``error``) are left out of the means and counted by ``coverage``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..editing.memla import ABLATIONS
from ..editing.registry import METHODS
from ..health import is_degenerate
from .paper import PAPER_METHOD_ORDER, PAPER_TABLE_OF_SOURCE, PAPER_TARGET_ORDER, PaperTables
from .store import METRIC_COLUMNS

MAIN_METRICS: tuple[str, ...] = ("ES", "PS", "NS")
"""Tables 3-5 report these; QS is Table 6."""
AVG = "avg"
MAIN_COLUMNS = ["table", "metric", "method", "source_lang", "target_lang", "value"]
ABLATION_COLUMNS = ["variant", "setting", "metric", "value"]
MULTIHOP_COLUMNS = ["method", "setting", "value"]
COMPARISON_KEYS = ["table", "metric", "method", "source_lang", "target_lang"]


# --------------------------------------------------------------------------- labels and order


def method_label(method: str) -> str:
    """Run name -> the registry's title, as every table shows it (the paper's tables are relabelled
    the same way, ``bench.paper``): ``memla`` -> ``MEMLA``, ``ft`` -> ``FT-L``, ``memla:w/o LSM`` ->
    ``MEMLA w/o LSM``, ``memla[lr=0.01]`` -> ``MEMLA [lr=0.01]``."""
    head, bracket, overrides = method.partition("[")
    base, _, variant = head.partition(":")
    spec = METHODS.get(base.strip().lower())
    title = spec.title if spec is not None else base.upper()
    label = f"{title} {variant}" if variant else title
    return f"{label} [{overrides}" if bracket else label


def ablation_variant(method: str) -> str | None:
    """Table 5 row of a run name (``memla`` -> ``MEMLA``), None for other methods and for sweep
    configurations (``memla[lr=0.01]``)."""
    if "[" in method:
        return None
    base, _, variant = method.partition(":")
    spec = METHODS.get(base)
    variants = tuple(spec.variants) if spec is not None else ()
    return (variant or variants[0]) if variants else None


def _rank(values: Sequence[str], order: Sequence[str]) -> dict[str, int]:
    known = [v for v in order if v in set(values)]
    return {v: i for i, v in enumerate(known + sorted(set(values) - set(known)))}


def _method_order(labels: Sequence[str]) -> dict[str, int]:
    # Paper methods first in the paper's order; ablations right after their base method.
    def key(label: str) -> tuple[int, str]:
        head = label.split(" ", 1)[0]
        base = PAPER_METHOD_ORDER.index(head) if head in PAPER_METHOD_ORDER else len(PAPER_METHOD_ORDER)
        variant = label[len(head):].strip()
        sub = ABLATIONS.index(variant) if variant in ABLATIONS else (0 if not variant else len(ABLATIONS))
        return (base, f"{head}:{sub:02d}:{variant}")

    return {label: i for i, label in enumerate(sorted(set(labels), key=key))}


def _target_order(sources_targets: Sequence[str]) -> dict[str, int]:
    rank = _rank([t for t in sources_targets if t != AVG], PAPER_TARGET_ORDER)
    rank[AVG] = len(rank)
    return rank


# --------------------------------------------------------------------------- cells


def target_means(results: pd.DataFrame, metrics: Sequence[str] = METRIC_COLUMNS) -> pd.DataFrame:
    """Mean over facts per (method, source, target, metric), with ``n`` facts behind each cell.

    Cells with no value at all (QS of facts without multi-hop questions) are left out.
    """
    columns = ["method", "source_lang", "target_lang", "metric", "value", "n"]
    ok = results[results["error"].fillna("") == ""] if "error" in results else results
    if ok.empty:
        return pd.DataFrame(columns=columns)
    long = ok.melt(
        id_vars=["method", "source_lang", "target_lang"], value_vars=list(metrics), var_name="metric", value_name="value"
    )
    long["value"] = pd.to_numeric(long["value"], errors="coerce")
    cells = (
        long.groupby(["method", "source_lang", "target_lang", "metric"], sort=False)["value"]
        .agg(value="mean", n="count")
        .reset_index()
    )
    return cells[cells["n"] > 0][columns].reset_index(drop=True)


def with_transferability(cells: pd.DataFrame) -> pd.DataFrame:
    """Add the ``avg`` target: per (method, source, metric), the mean of the cross-lingual cells."""
    cross = cells[cells["target_lang"] != cells["source_lang"]]
    avg = cross.groupby(["method", "source_lang", "metric"], sort=False)["value"].mean().reset_index()
    avg["target_lang"] = AVG
    avg["n"] = cross.groupby(["method", "source_lang", "metric"], sort=False)["n"].min().values
    return pd.concat([cells, avg[cells.columns]], ignore_index=True)


# --------------------------------------------------------------------------- Tables 3 and 4


def main_table(results: pd.DataFrame, metrics: Sequence[str] = MAIN_METRICS) -> pd.DataFrame:
    """Tables 3/4 in ``main_results.csv``'s long format, one block per source language.

    ``table`` is 3 for English sources and 4 for Chinese (the paper's tables), empty otherwise.
    """
    cells = with_transferability(target_means(results, metrics))
    if cells.empty:
        return pd.DataFrame(columns=MAIN_COLUMNS)
    cells["method"] = cells["method"].map(method_label)
    cells["table"] = cells["source_lang"].map(PAPER_TABLE_OF_SOURCE).astype("Int64")
    sources = _rank(list(cells["source_lang"]), PAPER_TABLE_OF_SOURCE)
    metric_rank = {m: i for i, m in enumerate(metrics)}
    methods = _method_order(list(cells["method"]))
    targets = _target_order(list(cells["target_lang"]))
    order = cells.assign(
        _s=cells["source_lang"].map(sources), _m=cells["metric"].map(metric_rank),
        _x=cells["method"].map(methods), _t=cells["target_lang"].map(targets),
    ).sort_values(["_s", "_m", "_x", "_t"], kind="mergesort")
    return order[MAIN_COLUMNS].reset_index(drop=True)


def main_table_wide(main: pd.DataFrame, source: str) -> pd.DataFrame:
    """One source's block as printed in the paper: rows (metric, method), columns ``en-en`` … ``en-avg``."""
    block = main[main["source_lang"] == source]
    if block.empty:
        return pd.DataFrame(columns=["metric", "method"])
    targets = _target_order(list(block["target_lang"]))
    wide = block.pivot_table(index=["metric", "method"], columns="target_lang", values="value", sort=False)
    wide = wide[sorted(wide.columns, key=targets.get)]
    wide.columns = [f"{source}-{t}" for t in wide.columns]
    wide.columns.name = None
    metric_rank = {m: i for i, m in enumerate(dict.fromkeys(block["metric"]))}
    methods = _method_order(list(block["method"]))
    wide = wide.reset_index()
    wide = wide.assign(_m=wide["metric"].map(metric_rank), _x=wide["method"].map(methods))
    return wide.sort_values(["_m", "_x"], kind="mergesort").drop(columns=["_m", "_x"]).reset_index(drop=True)


# --------------------------------------------------------------------------- Table 5


def ablation_table(results: pd.DataFrame, metrics: Sequence[str] = MAIN_METRICS) -> pd.DataFrame:
    """Table 5 in ``ablation.csv``'s format (``zh-zh`` and ``zh-avg`` per variant), for every source.

    Empty unless at least one ablated variant ran: MEMLA alone is not an ablation study.
    """
    variants = results["method"].map(ablation_variant)
    if not (variants.notna() & (variants != ABLATIONS[0])).any():
        return pd.DataFrame(columns=ABLATION_COLUMNS)
    rows = results[variants.notna()]
    cells = with_transferability(target_means(rows, metrics))
    cells = cells[(cells["target_lang"] == cells["source_lang"]) | (cells["target_lang"] == AVG)].copy()
    cells["variant"] = cells["method"].map(ablation_variant)
    cells["setting"] = cells["source_lang"] + "-" + cells["target_lang"]
    variant_rank = _rank(list(cells["variant"]), ABLATIONS)
    source_rank = _rank(list(cells["source_lang"]), ("zh", "en"))
    metric_rank = {m: i for i, m in enumerate(metrics)}
    order = cells.assign(
        _v=cells["variant"].map(variant_rank), _s=cells["source_lang"].map(source_rank),
        _a=(cells["target_lang"] == AVG).astype(int), _m=cells["metric"].map(metric_rank),
    ).sort_values(["_v", "_s", "_a", "_m"], kind="mergesort")
    return order[ABLATION_COLUMNS].reset_index(drop=True)


def ablation_table_wide(ablation: pd.DataFrame) -> pd.DataFrame:
    """As printed: one row per variant, columns ``zh-zh ES`` … ``zh-avg NS``."""
    if ablation.empty:
        return pd.DataFrame(columns=["variant"])
    columns = list(dict.fromkeys(ablation["setting"] + " " + ablation["metric"]))
    wide = ablation.assign(column=ablation["setting"] + " " + ablation["metric"]).pivot_table(
        index="variant", columns="column", values="value", sort=False
    )
    wide = wide[columns].reset_index()
    wide.columns.name = None
    return wide


# --------------------------------------------------------------------------- Table 6


def multihop_table(results: pd.DataFrame) -> pd.DataFrame:
    """Table 6 in ``multihop.csv``'s format: QS at ``<src>-<src>`` and ``<src>-avg`` per method."""
    cells = with_transferability(target_means(results, ["QS"]))
    cells = cells[(cells["target_lang"] == cells["source_lang"]) | (cells["target_lang"] == AVG)].copy()
    if cells.empty:
        return pd.DataFrame(columns=MULTIHOP_COLUMNS)
    cells["method"] = cells["method"].map(method_label)
    cells["setting"] = cells["source_lang"] + "-" + cells["target_lang"]
    methods = _method_order(list(cells["method"]))
    sources = _rank(list(cells["source_lang"]), ("en", "zh", "fr"))
    order = cells.assign(
        _x=cells["method"].map(methods), _s=cells["source_lang"].map(sources), _a=(cells["target_lang"] == AVG).astype(int)
    ).sort_values(["_x", "_s", "_a"], kind="mergesort")
    return order[MULTIHOP_COLUMNS].reset_index(drop=True)


def multihop_table_wide(multihop: pd.DataFrame) -> pd.DataFrame:
    """As printed: one row per method, columns ``en-en en-avg zh-zh …``."""
    if multihop.empty:
        return pd.DataFrame(columns=["method"])
    wide = multihop.pivot_table(index="method", columns="setting", values="value", sort=False)
    wide = wide[list(dict.fromkeys(multihop["setting"]))].reset_index()
    wide.columns.name = None
    return wide


# --------------------------------------------------------------------------- paper comparison


def _split_setting(frame: pd.DataFrame) -> pd.DataFrame:
    parts = frame["setting"].str.split("-", n=1, expand=True)
    return frame.assign(source_lang=parts[0], target_lang=parts[1])


def comparable(main: pd.DataFrame, ablation: pd.DataFrame, multihop: pd.DataFrame) -> pd.DataFrame:
    """Tables 3-6 stacked in one long format keyed by ``COMPARISON_KEYS`` (table as text)."""
    frames = []
    if not main.empty:
        frames.append(main.assign(table=main["table"].map(lambda t: "" if pd.isna(t) else str(int(t)))))
    if not ablation.empty:
        labelled = _split_setting(ablation)
        labelled["method"] = labelled["variant"].map(lambda v: "MEMLA" if v == ABLATIONS[0] else f"MEMLA {v}")
        frames.append(labelled.assign(table="5"))
    if not multihop.empty:
        frames.append(_split_setting(multihop).assign(table="6", metric="QS"))
    if not frames:
        return pd.DataFrame(columns=[*COMPARISON_KEYS, "value"])
    return pd.concat([f[[*COMPARISON_KEYS, "value"]] for f in frames], ignore_index=True)


def compare_with_paper(results: pd.DataFrame, paper: PaperTables) -> pd.DataFrame:
    """Every summary cell of ours next to the paper's (where it has one) and ``difference`` =
    ours − paper, in percentage points. The paper used mGPT 1.3B on the full MKEB."""
    ours = comparable(main_table(results), ablation_table(results), multihop_table(results))
    theirs = comparable(paper.main, paper.ablation, paper.multihop)
    merged = ours.merge(theirs, on=COMPARISON_KEYS, how="left", suffixes=("_ours", "_paper"))
    merged = merged.rename(columns={"value_ours": "ours", "value_paper": "paper"})
    merged["difference"] = merged["ours"] - merged["paper"]
    return merged[[*COMPARISON_KEYS, "ours", "paper", "difference"]]


def coverage(results: pd.DataFrame) -> pd.DataFrame:
    """Per (method, source): facts edited, failed edits, degenerate edits (``health``), mean
    seconds per edit and per evaluation."""
    columns = ["method", "source_lang", "facts", "failed", "degenerate", "seconds_neurons", "seconds_edit", "seconds_eval"]
    if results.empty:
        return pd.DataFrame(columns=columns)
    groups = results.drop_duplicates(subset=["fact_id", "method", "source_lang"]).copy()
    groups["failed"] = groups["error"].fillna("") != ""
    groups["degenerate"] = _degenerate(groups)
    table = groups.groupby(["method", "source_lang"], sort=False).agg(
        facts=("fact_id", "count"), failed=("failed", "sum"), degenerate=("degenerate", "sum"),
        seconds_neurons=("seconds_neurons", "sum"), seconds_edit=("seconds_edit", "mean"),
        seconds_eval=("seconds_eval", "mean"),
    )
    return table.reset_index()[columns]


def run_totals(results: pd.DataFrame) -> dict[str, float]:
    """Facts, edits (groups), failed edits, degenerate edits and compute seconds (neurons + edit +
    evaluation, summed over groups: the wall time of a single-process run, less loading)."""
    groups = results.drop_duplicates(subset=["fact_id", "method", "source_lang"])
    seconds = groups[["seconds_neurons", "seconds_edit", "seconds_eval"]].fillna(0).to_numpy().sum()
    return {
        "facts": int(results["fact_id"].nunique()),
        "edits": len(groups),
        "failed": int((groups["error"].fillna("") != "").sum()),
        "degenerate": int(_degenerate(groups).sum()),
        "seconds": float(seconds),
    }


def _degenerate(groups: pd.DataFrame) -> pd.Series:
    """Edits the health check flagged (files written before the check have no ``health``)."""
    if "health" not in groups.columns:
        return pd.Series(False, index=groups.index)
    return groups["health"].fillna("").astype(str).map(is_degenerate).astype(bool)


# --------------------------------------------------------------------------- files


def summary_paths(out: Path, sources: Sequence[str] = ()) -> dict[str, Path]:
    """Where ``write_summaries`` puts each table, next to the results file."""
    stem = out.with_suffix("")
    paths = {
        "main": Path(f"{stem}.main.csv"),
        "ablation": Path(f"{stem}.ablation.csv"),
        "ablation_wide": Path(f"{stem}.ablation.wide.csv"),
        "multihop": Path(f"{stem}.multihop.csv"),
        "multihop_wide": Path(f"{stem}.multihop.wide.csv"),
        "paper_comparison": Path(f"{stem}.paper_comparison.csv"),
    }
    for source in sources:
        paths[f"main_wide_{source}"] = Path(f"{stem}.main.{source}.wide.csv")
    return paths


def write_summaries(results: pd.DataFrame, out: Path, paper: PaperTables) -> dict[str, Path]:
    """Write every non-empty table as CSV (two decimals, like the paper); returns what was written."""
    main = main_table(results)
    sources = list(dict.fromkeys(main["source_lang"]))
    tables = {
        "main": main,
        "ablation": ablation_table(results),
        "multihop": multihop_table(results),
        "paper_comparison": compare_with_paper(results, paper),
    }
    tables["ablation_wide"] = ablation_table_wide(tables["ablation"])
    tables["multihop_wide"] = multihop_table_wide(tables["multihop"])
    for source in sources:
        tables[f"main_wide_{source}"] = main_table_wide(main, source)
    written = {}
    for name, path in summary_paths(out, sources).items():
        if not tables[name].empty:
            tables[name].to_csv(path, index=False, float_format="%.2f")
            written[name] = path
    return written


def format_table(frame: pd.DataFrame) -> str:
    """Two decimals, NaN as '-', for terminals."""
    if frame.empty:
        return "(no rows)"
    return frame.to_string(
        index=False, na_rep="-", float_format=lambda v: "-" if math.isnan(v) else f"{v:.2f}"
    )
