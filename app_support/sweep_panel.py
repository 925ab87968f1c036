"""The Benchmark page's view of a sweep: every configuration as a point of (cross-lingual ES on
known pairs, cross-lingual NS), the Pareto front, the selection rule's choice, and the summary
table. The numbers are ``memla_core.bench.tuning``'s, the same ones ``memla sweep`` prints."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from memla_core.bench.summaries import method_label
from memla_core.bench.tuning import SelectionRule, eligible, pareto_front, select_configs, sweep_summary
from memla_core.charts import sweep_scatter
from memla_core.views import language_label

from .widgets import table


def is_sweep(results: pd.DataFrame) -> bool:
    """Whether a results file holds sweep configurations (``memla[lr=0.003]``), not only methods."""
    return "method" in results and results["method"].astype(str).str.contains("[", regex=False).any()


def column_labels(source: str) -> dict[str, str]:
    """Human labels of the summary's columns, for edits written in ``source``."""
    return {
        "config": "configuration",
        "method": "method",
        "facts": "facts",
        "failed": "failed edits",
        "degenerate": "degenerate edits",
        "en_en_ES": f"{source}-{source} ES",
        "avg_ES": f"{source}-avg ES",
        "avg_ES_known": f"{source}-avg ES, known pairs",
        "n_known": "known pairs",
        "avg_PS": f"{source}-avg PS",
        "avg_PS_known": f"{source}-avg PS, known pairs",
        "avg_NS": f"{source}-avg NS",
        "avg_NS_change": f"{source}-avg NS change",
        "avg_QS": f"{source}-avg QS",
        "seconds_per_edit": "seconds per edit",
        "pareto": "on the Pareto front",
        "eligible": "passes the rule",
        "chosen": "chosen by the rule",
    }


def sweep_section(results: pd.DataFrame, stem: str) -> None:
    """The scatter, the rule's choice per method and the summary table with its CSV."""
    st.subheader("Sweep: ES vs NS")
    sources = list(dict.fromkeys(results["source_lang"]))
    source = sources[0] if len(sources) == 1 else st.radio(
        "Sweep summary for edits made in", sources, horizontal=True, format_func=language_label, key="sweep_source")
    summary = sweep_summary(results, source)
    if summary.empty:
        st.info(f"No edits written in {language_label(source)} in this file.")
        return
    rule = SelectionRule()
    summary["pareto"] = pareto_front(summary)
    summary["eligible"] = eligible(summary, rule)
    chosen = select_configs(summary, rule)
    summary["chosen"] = summary["config"].isin(set(chosen.values()))
    labels = column_labels(source)
    hover = {c: labels[c] for c in ("en_en_ES", "avg_ES", "n_known", "avg_NS_change", "seconds_per_edit")}
    shown = summary.assign(method=summary["method"].map(method_label), config=summary["config"].map(method_label))
    st.plotly_chart(sweep_scatter(shown, shown["pareto"], [method_label(c) for c in chosen.values()],
                                  x_title=labels["avg_ES_known"], y_title=labels["avg_NS"], hover=hover,
                                  title=f"Sweep: ES vs NS, edits made in {language_label(source)}"))
    st.caption(f"One point per configuration; up and to the right is better. *Known pairs*: (fact, language) pairs "
               f"where the unedited model preferred the true answer. The dashed line joins the configurations no "
               f"other one beats on both axes; the star is the choice of selection rule {rule.name} "
               f"(docs/tuning.md): {source}-{source} ES ≥ {rule.min_source_es:g}, NS at most {rule.ns_tolerance:g} "
               f"points below the method's paper-default configuration, no failed edits, then the highest ES on "
               f"known pairs.")
    missing = int(summary["avg_ES_known"].isna().sum())
    if missing:
        st.caption(f":warning: {missing} configuration(s) have no known pairs (or no scores before the edit) and "
                   "are not drawn.")
    st.markdown("\n".join(_choice_line(method, config, summary) for method, config in chosen.items()))
    table(shown.round(2).rename(columns=labels), f"{stem} sweep summary")


def _choice_line(method: str, config: str, summary: pd.DataFrame) -> str:
    title = method_label(method)
    if config != method:
        return f"- **{title}**: {config.partition('[')[2].rstrip(']')} (configuration {method_label(config)})"
    passed = summary.loc[summary["method"] == method, "eligible"].any()
    return f"- **{title}**: its paper defaults" + ("" if passed else " (no configuration passed the rule)")
