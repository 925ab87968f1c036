"""One model state's general ability: probe accuracy per task and language, and drift.

    report0, reference = measure_unedited(lm, probe, sentences)      # one pass, drift 0 by definition
    with edit.applied(lm):
        report1 = measure_ability(lm, probe, reference, edit=edit)   # one pass

An in-context edit (IKE) changes no weight; its ``context`` is put before every probe prompt and
every sentence, as ``evaluation.evaluate`` does for the edit's own prompts.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Mapping, Sequence

import pandas as pd

from ..editing.base import Edit
from ..fields import described
from ..models import LoadedModel
from .drift import DriftReference, build_reference, drift_per_position
from .items import TASKS, ProbeSet
from .probe import ItemResult, score_items


QUICK_ITEMS, QUICK_SENTENCES = 5, 5
"""``AbilityConfig.quick()``: sized for a ≤ 30 s check of one model state on a 2-core CPU
(benchmarks/ability_speed.py)."""


@dataclass(frozen=True)
class AbilityConfig:
    """What to measure. Defaults: the whole bundled probe and every sentence."""

    languages: tuple[str, ...] | None = described(None, "languages to measure (None: all)")
    items_per_task: int | None = described(None, "first N items of each task per language")
    sentences_per_language: int | None = described(None, "first N ordinary sentences per language")
    top_k: int = described(1024, "tokens kept per position of the drift reference")
    batch_size: int = described(16, "sequences per forward pass")

    def __post_init__(self) -> None:
        for name in ("items_per_task", "sentences_per_language"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"AbilityConfig.{name} must be at least 1 (or None for all), got {value}.")
        if self.top_k < 1 or self.batch_size < 1:
            raise ValueError("AbilityConfig.top_k and batch_size must be at least 1.")

    @classmethod
    def quick(cls, **fields) -> "AbilityConfig":
        """The first ``QUICK_ITEMS`` items of each task and ``QUICK_SENTENCES`` sentences per language."""
        return cls(**{"items_per_task": QUICK_ITEMS, "sentences_per_language": QUICK_SENTENCES, **fields})


@dataclass(frozen=True)
class DriftScore:
    """Mean KL(unedited ‖ this state) in nats per position, over one language's sentences."""

    language: str
    kl: float
    positions: int


@dataclass(frozen=True)
class AbilityReport:
    """Every item's answer and every language's drift, for one model state."""

    label: str
    items: tuple[ItemResult, ...]
    drift: tuple[DriftScore, ...]
    seconds: float
    top_k: int  # drift reference tokens per position
    coverage: float  # unedited probability those tokens hold on average

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys([r.language for r in self.items] + [d.language for d in self.drift]))

    def accuracy(self, task: str | None = None, language: str | None = None) -> float:
        """Share of items answered right (0–1); NaN when no item matches."""
        hits = [r.correct for r in self.items
                if (task is None or r.task == task) and (language is None or r.language == language)]
        return sum(hits) / len(hits) if hits else math.nan

    @property
    def mean_drift(self) -> float:
        """Mean of the languages' drifts (each language counts once)."""
        return sum(d.kl for d in self.drift) / len(self.drift) if self.drift else math.nan

    def table(self) -> pd.DataFrame:
        """One row per language (then 'all'): accuracy per task in %, items, drift."""
        rows = []
        tasks = [t for t in TASKS if any(r.task == t for r in self.items)]
        drift = {d.language: d.kl for d in self.drift}
        for lang in (*self.languages, None):
            row = {"language": lang or "all"}
            for task in tasks:
                row[f"{task} %"] = 100 * self.accuracy(task, lang)
            row["items"] = sum(1 for r in self.items if lang is None or r.language == lang)
            row["drift (KL)"] = self.mean_drift if lang is None else drift.get(lang, math.nan)
            rows.append(row)
        return pd.DataFrame(rows)


def ability_summary(reports: Sequence[AbilityReport], language: str = "en") -> pd.DataFrame:
    """One row per model state: each task's accuracy (%) in ``language`` and averaged over every
    language (each language once), then the mean drift and the seconds it took."""
    rows = []
    for report in reports:
        row: dict[str, object] = {"model": report.label}
        for task in TASKS:
            if any(r.task == task for r in report.items):
                row[f"{task} {language} %"] = 100 * report.accuracy(task, language)
                per_language = [report.accuracy(task, lang) for lang in report.languages]
                per_language = [v for v in per_language if not math.isnan(v)]
                row[f"{task} mean %"] = 100 * sum(per_language) / len(per_language) if per_language else math.nan
        row["drift (KL)"] = report.mean_drift
        row["seconds"] = report.seconds
        rows.append(row)
    return pd.DataFrame(rows)


def select_sentences(sentences: Mapping[str, Sequence[str]], config: AbilityConfig) -> dict[str, tuple[str, ...]]:
    languages = config.languages or tuple(sentences)
    missing = [lang for lang in languages if lang not in sentences]
    if missing:
        raise ValueError(f"No ordinary sentences in {', '.join(missing)}; they exist in {', '.join(sentences)}.")
    n = config.sentences_per_language
    return {lang: tuple(sentences[lang][:n] if n else sentences[lang]) for lang in languages}


def measure_unedited(
    lm: LoadedModel, probe: ProbeSet, sentences: Mapping[str, Sequence[str]],
    config: AbilityConfig = AbilityConfig(), label: str = "unedited",
) -> tuple[AbilityReport, DriftReference]:
    """The probe on the model as it is, and the drift reference taken from this same state."""
    started = time.perf_counter()
    with lm.lock:
        results = score_items(lm, _items(probe, config), batch_size=config.batch_size)
        reference = build_reference(lm, select_sentences(sentences, config), config.top_k, config.batch_size)
    zero = tuple(DriftScore(lang, 0.0, _positions(reference, lang)) for lang in reference.sentences)
    report = AbilityReport(label, tuple(results), zero, time.perf_counter() - started, reference.top_k, reference.coverage)
    return report, reference


def measure_ability(
    lm: LoadedModel, probe: ProbeSet, reference: DriftReference, edit: Edit | None = None,
    config: AbilityConfig = AbilityConfig(), label: str | None = None,
) -> AbilityReport:
    """The probe and the drift from ``reference`` on the model as it is now (apply ``edit`` first)."""
    if reference.model_key != lm.key:
        raise ValueError(f"The drift reference was taken on {reference.model_key}, not {lm.key}; "
                         "build one on this model with measure_unedited.")
    started = time.perf_counter()
    context = edit.context if edit is not None else ""
    with lm.lock:
        results = score_items(lm, _items(probe, config), context=context, batch_size=config.batch_size)
        per_position = drift_per_position(lm, reference, context=context, batch_size=config.batch_size)
    drift = []
    offset = 0
    spans: dict[str, list[float]] = {}
    for sentence, lang in enumerate(reference.languages):
        n = reference.positions(sentence)
        spans.setdefault(lang, []).extend(per_position[offset : offset + n].tolist())
        offset += n
    for lang, values in spans.items():
        drift.append(DriftScore(lang, sum(values) / len(values), len(values)))
    name = label or (f"{edit.method} edit of {edit.fact_id} ({edit.source_language})" if edit else "current model")
    return AbilityReport(name, tuple(results), tuple(drift), time.perf_counter() - started,
                         reference.top_k, reference.coverage)


def _items(probe: ProbeSet, config: AbilityConfig):
    return probe.subset(config.languages, config.items_per_task).items


def _positions(reference: DriftReference, lang: str) -> int:
    return sum(reference.positions(i) for i, owner in enumerate(reference.languages) if owner == lang)
