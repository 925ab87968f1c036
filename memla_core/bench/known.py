"""What an edit changed, measured on the pairs the unedited model got right.

Raw ES counts a (fact, target language) pair as a success whenever the edited model prefers the
new answer; where the unedited model already preferred it (it never knew the fact there), that
"success" is free. A pair is *known* when the unedited model's P(true) > P(new) on the edit
prompt (``p_true_before > p_new_before``). Known-pair scores use only those pairs; NS change is
NS after − NS before on the same neighbourhood prompts. docs/benchmarks.md states these.
"""

from __future__ import annotations

import pandas as pd


def known_mask(rows: pd.DataFrame) -> pd.Series:
    """True where the unedited model preferred the true answer (needs the ``*_before`` columns;
    rows without them, or without a ``target_true``, are not known)."""
    if "p_true_before" not in rows or "p_new_before" not in rows:
        return pd.Series(False, index=rows.index)
    true = pd.to_numeric(rows["p_true_before"], errors="coerce")
    new = pd.to_numeric(rows["p_new_before"], errors="coerce")
    return (true > new).fillna(False)


def ok_rows(results: pd.DataFrame) -> pd.DataFrame:
    """Rows of edits that ran (failed edits are counted elsewhere, not scored)."""
    return results[results["error"].fillna("") == ""] if "error" in results else results


def pair_scores(results: pd.DataFrame) -> pd.DataFrame:
    """Per row: raw ES/PS, ES/PS if known (NaN otherwise), NS after − before, and ``known``."""
    rows = ok_rows(results).copy()
    rows["known"] = known_mask(rows)
    for metric in ("ES", "PS"):
        rows[f"{metric}_known"] = pd.to_numeric(rows[metric], errors="coerce").where(rows["known"])
    if "NS_before" in rows:
        rows["NS_change"] = pd.to_numeric(rows["NS"], errors="coerce") - pd.to_numeric(rows["NS_before"], errors="coerce")
    else:
        rows["NS_change"] = float("nan")
    return rows


def change_table(results: pd.DataFrame) -> pd.DataFrame:
    """Per (method, source, target): raw ES/PS, known-pair ES/PS with their count n_known, ES of
    the unedited model, NS before/after and NS change; plus an ``avg`` target per (method, source)
    pooling every cross-lingual pair (a mean over pairs, not over per-language means: known
    pairs are few per language)."""
    rows = pair_scores(results)
    if rows.empty:
        return pd.DataFrame(columns=TABLE_COLUMNS)
    rows = rows.assign(cross=rows["target_lang"] != rows["source_lang"])
    out = []
    for (method, source), group in rows.groupby(["method", "source_lang"], sort=False):
        for target, cell in [*group.groupby("target_lang", sort=False), ("avg", group[group["cross"]])]:
            out.append({"method": method, "source_lang": source, "target_lang": target, **_cell(cell)})
    return pd.DataFrame(out, columns=TABLE_COLUMNS)


TABLE_COLUMNS = [
    "method", "source_lang", "target_lang", "pairs", "n_known", "ES", "ES_known", "PS", "PS_known",
    "ES_before", "NS_before", "NS", "NS_change",
]


def _mean(series) -> float:
    values = pd.to_numeric(series, errors="coerce").dropna()
    return float(values.mean()) if len(values) else float("nan")


def _cell(cell: pd.DataFrame) -> dict:
    return {
        "pairs": len(cell),
        "n_known": int(cell["known"].sum()),
        "ES": _mean(cell["ES"]),
        "ES_known": _mean(cell["ES_known"]),
        "PS": _mean(cell["PS"]),
        "PS_known": _mean(cell["PS_known"]),
        "ES_before": _mean(cell.get("ES_before", pd.Series(dtype=float))),
        "NS_before": _mean(cell.get("NS_before", pd.Series(dtype=float))),
        "NS": _mean(cell["NS"]),
        "NS_change": _mean(cell["NS_change"]),
    }
