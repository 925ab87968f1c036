"""Tables the app shows, as plain pandas (no streamlit): facts, neuron sets, edit results, paper.

Each function takes core objects and returns a DataFrame (or a pandas ``Styler`` for colour), so
the same tables can be tested, printed by the CLI or downloaded as CSV.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from .data import LANGUAGE_NAMES, MKEBDataset
from .data.schema import Fact
from .evaluation import METRICS, EvalReport
from .neurons import NeuronSets
from .bench.paper import PAPER_TARGET_ORDER, load_paper_tables
from .bench.summaries import method_label

PAPER_TABLES = {
    "main_results": "Tables 3 and 4: ES/PS/NS per method and language pair",
    "ablation": "Table 5: ablation, edits made in Chinese",
    "multihop": "Table 6: multi-hop question score (QS)",
    "prompt_lengths": "Table 1: average prompt length",
}
PAPER_LANGUAGES = (*PAPER_TARGET_ORDER, "avg")


def format_count(n: int) -> str:
    """``268.1 M``, ``41.2 k``, ``950``."""
    for size, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return str(n)


def language_label(code: str) -> str:
    """``English (en)``; unknown codes as they are."""
    return f"{LANGUAGE_NAMES[code]} ({code})" if code in LANGUAGE_NAMES else code


# --------------------------------------------------------------------------- facts


def _subject(fact: Fact) -> tuple[str, str, str]:
    code = "en" if "en" in fact.languages else fact.language_codes[0]
    edit = fact.languages[code].edit
    return edit.subject, edit.target_true or "", edit.target_new


def facts_overview(facts: Sequence[Fact]) -> pd.DataFrame:
    """One row per fact: id, relation, subject, true and new answer (English where present)."""
    rows = []
    for fact in facts:
        subject, true, new = _subject(fact)
        rows.append(
            {
                "id": fact.example_id,
                "relation": fact.relation or fact.relation_description,
                "subject": subject,
                "true answer": true,
                "new answer": new,
                "languages": len(fact.languages),
            }
        )
    return pd.DataFrame(rows, columns=["id", "relation", "subject", "true answer", "new answer", "languages"])


def filter_facts(dataset: MKEBDataset, query: str = "", relation: str = "") -> list[Fact]:
    """Facts whose id, relation, subject or answers (in any language) contain ``query``."""
    needle = query.strip().casefold()
    found = []
    for fact in dataset.facts:
        if relation and (fact.relation or fact.relation_description) != relation:
            continue
        if needle:
            haystack = [fact.example_id, fact.relation, fact.relation_description]
            for block in fact.languages.values():
                haystack += [block.edit.subject, block.edit.target_new, block.edit.target_true or ""]
            if not any(needle in text.casefold() for text in haystack):
                continue
        found.append(fact)
    return found


def relations(dataset: MKEBDataset) -> list[str]:
    return sorted({fact.relation or fact.relation_description for fact in dataset.facts})


def fact_side_by_side(fact: Fact, languages: Sequence[str] | None = None) -> pd.DataFrame:
    """The fact with one column per language and one row per field (edit, paraphrases, …)."""
    codes = [c for c in (languages or fact.language_codes) if c in fact.languages]
    columns: dict[str, dict[str, str]] = {}
    for code in codes:
        block = fact.languages[code]
        col = {
            "subject": block.edit.subject,
            "edit prompt": block.edit.filled(),
            "true answer": block.edit.target_true or "—",
            "new answer": block.edit.target_new,
        }
        for i, text in enumerate(block.paraphrase_prompts, 1):
            col[f"paraphrase {i}"] = text
        for i, (prompt, answer) in enumerate(zip(block.neighborhood_prompts, block.neighborhood_answers), 1):
            col[f"neighborhood {i}"] = f"{prompt} → {answer}"
        for i, question in enumerate(block.multi_hop_questions, 1):
            col[f"multi-hop {i}"] = question
        if block.multi_hop_new_answer:
            col["multi-hop new answer"] = block.multi_hop_new_answer
        columns[language_label(code)] = col
    frame = pd.DataFrame(columns)
    order = list(dict.fromkeys(key for col in columns.values() for key in col))
    frame = frame.reindex(order).fillna("")
    frame.index.name = "field"
    return frame


# --------------------------------------------------------------------------- neurons


def language_attribution(neurons: NeuronSets, language: str) -> np.ndarray:
    """[layers, neurons] attribution of one language, relative to each prompt's maximum.

    Every prompt's scores are divided by that prompt's largest score and the language keeps the
    maximum over its prompts, so a cell above the threshold (0.3 by default) is exactly a neuron
    of the language's set N^k.
    """
    mine = [a.scores for a in neurons.attributions if a.language == language]
    if not mine:
        raise KeyError(f"No attributions for language '{language}'; computed: {', '.join(neurons.per_language)}.")
    relative = [s / s.max() if s.max() > 0 else np.zeros_like(s) for s in mine]
    return np.maximum.reduce(relative)


def top_neurons(neurons: NeuronSets, language: str, k: int = 50) -> pd.DataFrame:
    """The ``k`` highest-scoring neurons of a language, with their set membership."""
    scores = language_attribution(neurons, language)
    flat = np.argsort(scores, axis=None)[::-1][:k]
    layers, index = np.unravel_index(flat, scores.shape)
    rows = []
    for layer, neuron in zip(layers.tolist(), index.tolist()):
        key = (layer, neuron)
        rows.append(
            {
                "language": language,
                "layer": layer,
                "neuron": neuron,
                "relative_score": float(scores[layer, neuron]),
                "in_language_set": key in neurons.per_language.get(language, frozenset()),
                "language_independent": key in neurons.language_independent,
            }
        )
    return pd.DataFrame(rows)


def neuron_overlap(neurons: NeuronSets, measure: str = "jaccard") -> pd.DataFrame:
    """Languages × languages: shared neurons (``count``) or Jaccard index |A∩B| / |A∪B|."""
    if measure not in ("jaccard", "count"):
        raise ValueError("measure must be 'jaccard' or 'count'.")
    langs = list(neurons.per_language)
    matrix = pd.DataFrame(index=langs, columns=langs, dtype=float)
    for a in langs:
        for b in langs:
            sa, sb = neurons.per_language[a], neurons.per_language[b]
            shared = len(sa & sb)
            if measure == "count":
                matrix.loc[a, b] = shared
            else:
                union = len(sa | sb)
                matrix.loc[a, b] = shared / union if union else math.nan
    return matrix


def neuron_summary(neurons: NeuronSets) -> pd.DataFrame:
    """Per language: size of its set and how many of them are language-independent."""
    return pd.DataFrame(
        [
            {
                "language": lang,
                "neurons": len(found),
                "language_independent": len(found & neurons.language_independent),
                "is_source": lang == neurons.source_language,
            }
            for lang, found in neurons.per_language.items()
        ]
    )


# --------------------------------------------------------------------------- edits

COMPARISON_COLUMNS = [
    "target language", "true answer", "new answer", "answer before", "answer after",
    "ES", "PS", "NS before", "NS", "QS", "model knew it",
    "P(new) before", "P(new) after", "P(true) before", "P(true) after",
]
"""What the app shows of ``edit_comparison`` (locality needs its "before" to be read): the answers
and scores first, so that a table wider than the page shows them without scrolling."""


def edit_comparison(
    before: EvalReport, after: EvalReport, method: str = "", fact: Fact | None = None,
    knowledge: dict[str, str] | None = None,
) -> pd.DataFrame:
    """One row per target language: answers and probabilities before/after, metrics after.

    With ``fact`` each row also shows that language's true and new answer (an answer reads as
    wrong or right only next to them); ``knowledge`` maps a language to the verdict on whether the
    unedited model knew the fact there (``knowledge.describe``)."""
    b = before.summary.set_index("target_lang")
    a = after.summary.set_index("target_lang")
    rows = []
    for lang in a.index:
        targets = fact.languages[lang].edit if fact is not None and lang in fact.languages else None
        row = {
            "target language": lang,
            "true answer": (targets.target_true or "—") if targets else "",
            "new answer": targets.target_new if targets else "",
            "model knew it": (knowledge or {}).get(lang, ""),
            "answer before": b.loc[lang, "answer"] if lang in b.index else "",
            "answer after": a.loc[lang, "answer"],
        }
        # The scores come right after the answers, probabilities last: a table wider than the page
        # then shows what the edit achieved without scrolling.
        for metric in METRICS:
            row[metric] = a.loc[lang, metric]
            row[f"{metric} before"] = b.loc[lang, metric] if lang in b.index else math.nan
        row.update({
            "P(new) before": b.loc[lang, "p_new"] if lang in b.index else math.nan,
            "P(new) after": a.loc[lang, "p_new"],
            "P(true) before": b.loc[lang, "p_true"] if lang in b.index else math.nan,
            "P(true) after": a.loc[lang, "p_true"],
        })
        rows.append(row)
    frame = pd.DataFrame(rows)
    if method:
        frame.insert(0, "method", method)
    return frame


def edit_details(before: EvalReport, after: EvalReport) -> pd.DataFrame:
    """Every prompt with its scores before and after the edit."""
    keys = ["target_lang", "kind", "prompt", "answer"]
    merged = before.details.merge(after.details, on=keys, how="outer", suffixes=(" before", " after"))
    text = [c for c in merged.columns if merged[c].dtype == object]
    merged[text] = merged[text].fillna("—")  # a missing answer reads "—", never "None"
    return merged.rename(columns=lambda c: _human_column(str(c)))


DETAIL_LABELS = {
    "target_lang": "target language", "kind": "prompt kind", "answer": "expected answer", "p_new": "P(new)",
    "p_true": "P(true)", "success": "new answer wins", "generated": "model's answer", "f1": "token F1",
}


def _human_column(name: str) -> str:
    """``p_new before`` -> ``P(new) before``: the raw field names stay in the code, not on screen."""
    head, _, when = name.partition(" ")
    label = DETAIL_LABELS.get(head, head)
    return f"{label} {when}" if when else label


def methods_side_by_side(comparisons: Sequence[pd.DataFrame], metric: str) -> pd.DataFrame:
    """Methods (rows) × target languages (columns) for one metric after the edit."""
    frame = pd.concat(comparisons, ignore_index=True)
    table = frame.pivot_table(index="method", columns="target language", values=metric, aggfunc="first", dropna=False)
    columns = [c for c in frame["target language"].drop_duplicates() if c in table.columns]
    return table.loc[list(frame["method"].drop_duplicates()), columns]


def methods_summary(reports: dict[str, EvalReport], source_language: str) -> pd.DataFrame:
    """Methods × metrics: the score in the source language and its mean over the other languages."""
    rows = []
    for method, report in reports.items():
        summary = report.summary.set_index("target_lang")
        transfer = report.transferability()
        row: dict[str, object] = {"method": method}
        for metric in METRICS:
            row[f"{metric} {source_language}"] = summary[metric].get(source_language, math.nan)
            row[f"{metric} others"] = transfer[metric]
        rows.append(row)
    return pd.DataFrame(rows)


def _score_colour(value: object) -> str:
    """Red (0) → yellow (50) → green (100) background for a percentage."""
    if not isinstance(value, (int, float)) or math.isnan(value):
        return ""
    x = min(max(float(value), 0.0), 100.0) / 100
    red = int(230 if x < 0.5 else 230 - (x - 0.5) * 2 * 130)
    green = int(110 + x * 2 * 110 if x < 0.5 else 220)
    return f"background-color: rgba({red}, {green}, 110, 0.55)"


def style_scores(frame: pd.DataFrame, score_columns: Sequence[str] = (*METRICS, *(f"{m} before" for m in METRICS))):
    """A Styler colouring percentage columns and formatting probabilities."""
    present = [c for c in score_columns if c in frame.columns]
    probabilities = [c for c in frame.columns if str(c).startswith("P(")]
    styler = frame.style.map(_score_colour, subset=present)
    styler = styler.format("{:.1f}", subset=present, na_rep="—")
    return styler.format("{:.2e}", subset=probabilities, na_rep="—")


# --------------------------------------------------------------------------- any table, for people

MISSING = "—"
"""What a cell without a value reads (Streamlit would write "None")."""
STYLED_CELLS = 100_000
"""Up to this many cells a table is drawn through a Styler (numbers keep sorting as numbers);
beyond, as formatted text (a Styler of a whole sweep file would take seconds to send)."""


def _float_format(values: pd.Series) -> str:
    finite = values[np.isfinite(values.to_numpy(dtype=float, na_value=np.nan))]
    if finite.empty or (finite == finite.round()).all():
        return "{:.0f}"
    return "{:.3g}" if finite.abs().max() < 1 else "{:.2f}"


def display_table(frame: pd.DataFrame):
    """``frame`` as the app draws it: missing cells read "—", never "None"; floats rounded per
    column (whole numbers as such, probabilities to 3 significant digits, others to 2 decimals).
    Returns a pandas ``Styler`` up to ``STYLED_CELLS`` cells, else a frame of text."""
    floats = [c for c in frame.columns if pd.api.types.is_float_dtype(frame[c])]
    formats = {c: _float_format(frame[c]) for c in floats}
    if frame.size > STYLED_CELLS or not (frame.index.is_unique and frame.columns.is_unique):  # Styler needs unique labels
        text = frame.astype(object)
        for c, fmt in formats.items():
            text[c] = [MISSING if pd.isna(v) else fmt.format(v) for v in frame[c]]
        return text.where(frame.notna(), MISSING)
    styler = frame.style.format(na_rep=MISSING)
    for c, fmt in formats.items():
        styler = styler.format(fmt, subset=[c], na_rep=MISSING)
    return styler


RESULT_LABELS = {
    "fact_id": "fact", "method": "method", "source_lang": "edit language", "target_lang": "target language",
    "ES_before": "ES before", "PS_before": "PS before", "NS_before": "NS before", "QS_before": "QS before",
    "p_new_before": "P(new) before", "p_true_before": "P(true) before", "answer_before": "answer before",
    "seconds_neurons": "seconds for neurons", "seconds_edit": "seconds per edit", "seconds_eval": "seconds to score",
    "es_definition": "ES means", "failed": "failed edits", "degenerate": "degenerate edits",
}
"""Benchmark columns in words (``memla bench`` files keep the short names: CSVs are read back)."""


def readable_results(frame: pd.DataFrame) -> pd.DataFrame:
    """Benchmark rows, or a table made of them (``coverage``), for people: each method by its
    registry title (``ft`` -> FT-L), the columns in words."""
    out = frame.copy()
    if "method" in out:
        out["method"] = out["method"].astype(str).map(method_label)
    return out.rename(columns=RESULT_LABELS)


# --------------------------------------------------------------------------- paper


def paper_table(name: str) -> pd.DataFrame:
    """One of the paper's published tables (``assets/paper/<name>.csv``, read by ``bench.paper``)."""
    if name not in PAPER_TABLES:
        raise KeyError(f"Unknown paper table '{name}'; available: {', '.join(PAPER_TABLES)}.")
    tables = load_paper_tables()
    field = "main" if name == "main_results" else name
    return getattr(tables, field).copy()


def target_order(codes: Sequence[str]) -> list[str]:
    """The paper's column order; languages it lacks (imported data) after, ``avg`` last."""
    present = set(codes)
    known = [c for c in PAPER_LANGUAGES if c in present and c != "avg"]
    extra = sorted(present - set(PAPER_LANGUAGES))
    return known + extra + (["avg"] if "avg" in present else [])


def main_results_grid(frame: pd.DataFrame, source_language: str, metric: str) -> pd.DataFrame:
    """Tables 3/4 for one metric: methods × target languages (the paper's column order).

    ``frame`` is the long format of ``assets/paper/main_results.csv``, which the benchmark's
    ``main_table`` shares, so the same grid serves the paper's numbers and a run's.
    """
    rows = frame[(frame["source_lang"] == source_language) & (frame["metric"] == metric)]
    grid = rows.pivot_table(index="method", columns="target_lang", values="value", aggfunc="first")
    grid = grid[target_order(list(grid.columns))]
    grid.columns = [f"{source_language}-{c}" for c in grid.columns]
    grid.columns.name = None
    order = [m for m in rows["method"].drop_duplicates()]
    return grid.loc[order]


def source_target_grid(frame: pd.DataFrame, method: str, metric: str) -> pd.DataFrame:
    """One method and metric of a main table: source languages × target languages."""
    rows = frame[(frame["method"] == method) & (frame["metric"] == metric)]
    grid = rows.pivot_table(index="source_lang", columns="target_lang", values="value", aggfunc="first")
    grid = grid[target_order(list(grid.columns))]
    grid = grid.loc[[s for s in target_order(list(grid.index))]]
    grid.index.name, grid.columns.name = "source", None
    return grid


def difference_grid(ours: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """``ours − paper`` cell by cell, on our rows and columns; NaN where the paper has no cell."""
    return ours - paper.reindex(index=ours.index, columns=ours.columns)


def ablation_grid(frame: pd.DataFrame) -> pd.DataFrame:
    """Table 5: variants × (setting, metric)."""
    grid = frame.pivot_table(index="variant", columns=["setting", "metric"], values="value", aggfunc="first")
    grid = grid.loc[list(frame["variant"].drop_duplicates())]
    grid.columns = [f"{setting} {metric}" for setting, metric in grid.columns]
    wanted = [f"{s} {m}" for s in ("zh-zh", "zh-avg") for m in ("ES", "PS", "NS")]
    return grid[[c for c in wanted if c in grid.columns]]


def multihop_grid(frame: pd.DataFrame) -> pd.DataFrame:
    """Table 6: methods × settings (QS)."""
    grid = frame.pivot(index="method", columns="setting", values="value")
    settings = list(frame["setting"].drop_duplicates())
    return grid.loc[list(frame["method"].drop_duplicates()), settings]


def prompt_length_grid(frame: pd.DataFrame) -> pd.DataFrame:
    """Table 1: languages × prompt types."""
    grid = frame.pivot(index="language", columns="prompt_type", values="avg_length")
    return grid.loc[list(frame["language"].drop_duplicates()), list(frame["prompt_type"].drop_duplicates())]
