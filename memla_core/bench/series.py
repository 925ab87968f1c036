"""Many edits at once or in a row (issue 14): what a sequential or batch run is, the rows it
writes, and what both kinds share — the results file checks, the unedited reference (step 0) and
one model state's scores. The loops are ``sequential.py`` and ``batch_run.py``; ``run_series``
is their one entry point (``memla bench --sequential N`` / ``--batch-size k``).

Rows are the single-edit runner's columns plus ``store.SERIES_COLUMNS``:

- ``role`` ``unedited`` (step 0: the unedited model on every fact of the run), ``newest`` (the
  edit pushed at this step), ``earlier`` (an edit pushed before and still on the stack),
  ``batch`` (a fact of the batch edit of this step) — one row per fact and target language with
  ES/PS/NS/QS; ``model`` — one row per probe language with ``ability_accuracy`` (% of probe items
  answered right, both tasks) and ``drift`` (KL from the unedited model, nats per token).
- ``step``: sequential, the number of edits pushed so far (0 = unedited); batch, the batch's
  number (0 = unedited). ``edits``: how many edits the model holds at that row (sequential =
  step; batch = k, 0 at step 0) — the x axis of the curves.
- ``run_settings``: this config as JSON, with the chain's facts in order; a run on a file whose
  rows have other run settings is refused (``--overwrite`` or another ``--out``).

A step's rows are appended in one write, its ``model`` rows last: a step is complete when all of
them are in the file, and a resumed run recomputes the first incomplete step onwards.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Mapping, Sequence

import pandas as pd

from ..ability import AbilityConfig, load_bundled_probe, load_sentences, measure_ability, measure_unedited
from ..ability.items import ProbeSet
from ..bounds import check_results_path
from ..data import MKEBDataset
from ..data.schema import Fact
from ..editing.base import Edit, EditDivergedError
from ..editing.registry import METHODS, method_spec
from ..evaluation import evaluate
from ..fields import described
from ..models import LoadedModel, load_model
from ..session import CancelToken
from . import lock, store
from .config import BenchConfig, BenchConfigError, MethodRun, base_method, resolve_method
from .runner import check_compatible, check_languages, load_dataset, select_facts, target_languages

log = logging.getLogger(__name__)

ABILITY_ITEMS, ABILITY_SENTENCES = 5, 5
"""Probe items per task and sentences per language of each model state: ``memla ability``'s quick
check (≤ 30 s per state on the default model, 2-core CPU)."""

StepHook = Callable[[tuple[str, str, int], list[dict]], None]
"""Called with ``(method, source, step)`` and the step's rows once they are on disk (tests use it
to interrupt a run)."""
ProgressFn = Callable[[int, int, str], None]


@dataclass(frozen=True)
class SeriesConfig:
    """A sequential or batch run on top of a ``BenchConfig`` (model, facts, methods, languages,
    results file)."""

    kind: Literal["sequential", "batch"] = described("sequential", "edits one after another, or k facts at once")
    edits: int = described(10, "sequential: edits in a row (the first N selected facts); batch: facts per batch k")
    eval_every: int = described(1, "sequential: evaluate every E edits (and after the last)")
    ability_items: int | None = described(ABILITY_ITEMS, "probe items per task and language (None: all)")
    ability_sentences: int | None = described(ABILITY_SENTENCES, "drift sentences per language (None: all)")

    def __post_init__(self) -> None:
        if self.kind not in ("sequential", "batch"):
            raise BenchConfigError(f"SeriesConfig.kind must be 'sequential' or 'batch', got {self.kind!r}.")
        flag = "--sequential" if self.kind == "sequential" else "--batch-size"
        if self.edits < 1:
            raise BenchConfigError(f"{flag} must be at least 1, got {self.edits}.")
        if self.eval_every < 1:
            raise BenchConfigError(f"--eval-every must be at least 1, got {self.eval_every}.")
        for name in ("ability_items", "ability_sentences"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise BenchConfigError(f"SeriesConfig.{name} must be at least 1 (or None for all), got {value}.")

    def settings(self, fact_ids: Sequence[str]) -> str:
        """What the rows record in ``run_settings`` (compared when resuming)."""
        return json.dumps({**dataclasses.asdict(self), "facts": list(fact_ids)}, sort_keys=True)

    def eval_steps(self) -> list[int]:
        """Sequential: the steps that are evaluated — 0, every ``eval_every``-th, and the last."""
        return [0, *(s for s in range(1, self.edits + 1) if s % self.eval_every == 0 or s == self.edits)]


@dataclass
class SeriesOutcome:
    results: pd.DataFrame
    path: Path
    computed: int  # steps computed (with rows)
    skipped: int  # steps found complete in the file
    failed: int  # edits that failed


def check_batchable(methods: Sequence[str]) -> None:
    """Refuse methods that cannot edit a batch, before any model loads, naming those that can."""
    refused = [method_spec(base_method(m)).title for m in methods if not method_spec(base_method(m)).batchable]
    if refused:
        able = ", ".join(f"{spec.title} ({spec.name})" for spec in METHODS.values() if spec.batchable)
        raise BenchConfigError(
            f"--batch-size: {', '.join(refused)} edit{'s' if len(refused) == 1 else ''} one fact at a time and cannot "
            f"edit a batch; methods that can: {able}. Run the others with --sequential (one edit after another)."
        )


# --------------------------------------------------------------------------- the shared state


class Reference:
    """The unedited model, measured once per run before any edit: the probe (step 0's ability),
    the drift reference every later state is compared with, and each fact's unedited scores."""

    def __init__(self, lm: LoadedModel, config: BenchConfig, series: SeriesConfig, languages: Sequence[str],
                 probe: ProbeSet | None = None, sentences: Mapping[str, Sequence[str]] | None = None):
        probe = probe or load_bundled_probe()
        sentences = sentences or load_sentences()
        wanted = [lang for lang in languages if lang in probe.languages and lang in sentences]
        if not wanted:
            raise BenchConfigError(
                f"The ability probe has no items in the target languages ({', '.join(languages)}); it has "
                f"{', '.join(probe.languages)}. Add one of them to --target-langs."
            )
        self.lm, self.config, self.probe = lm, config, probe
        self.ability = AbilityConfig(languages=tuple(wanted), items_per_task=series.ability_items,
                                     sentences_per_language=series.ability_sentences)
        self.unedited_report, self.drift = measure_unedited(lm, probe, sentences, self.ability)
        self._unedited: dict[str, list[dict]] = {}

    @property
    def languages(self) -> tuple[str, ...]:
        return self.ability.languages

    def prepare(self, facts: Sequence[Fact]) -> None:
        """Score ``facts`` on the unedited model (call it before any edit is applied): their
        ``unedited`` rows and every later row's ``*_before`` columns."""
        for fact in facts:
            if fact.example_id not in self._unedited:
                report = evaluate(self.lm, fact, target_languages(fact, self.config))
                self._unedited[fact.example_id] = report.summary.to_dict("records")

    def unedited(self, fact: Fact) -> list[dict]:
        if fact.example_id not in self._unedited:
            raise RuntimeError(f"Reference.prepare was not called for {fact.example_id} with the model unedited.")
        return self._unedited[fact.example_id]

    def before(self, fact: Fact) -> dict[str, dict[str, object]]:
        """The fact's ``*_before`` columns per target language."""
        return {
            row["target_lang"]: {**{f"{m}_before": row[m] for m in store.METRIC_COLUMNS}, "p_new_before": row["p_new"],
                                 "p_true_before": row["p_true"], "answer_before": row["answer"]}
            for row in self.unedited(fact)
        }

    def model_rows(self, base: dict, edit: Edit | None, seconds: float, error: str = "") -> list[dict]:
        """One ``model`` row per probe language: ability accuracy and drift of the model as it is
        now (``edit``: an in-context edit's context; weights are already edited). ``error``: the
        step's edit failed and the rows carry no scores, only the message."""
        if error:
            return [{**base, "role": "model", "fact_id": "", "target_lang": lang, "error": error,
                     "seconds_eval": seconds} for lang in self.languages]
        start = time.perf_counter()
        if edit is None and base["step"] == 0:
            report = self.unedited_report
        else:
            try:
                report = measure_ability(self.lm, self.probe, self.drift, edit=edit, config=self.ability)
            except (IndexError, RuntimeError) as err:
                if edit is None or not edit.context:
                    raise
                # An in-context edit's context before a probe item can outgrow the model's positions.
                tokens = len(self.lm.tokenizer(edit.context)["input_ids"])
                message = f"ability not measured with the edit's {tokens}-token context in front: {type(err).__name__}: {err}"
                return self.model_rows(base, None, seconds, error=message)
        drift = {d.language: d.kl for d in report.drift}
        seconds += time.perf_counter() - start
        return [{**base, "role": "model", "fact_id": "", "target_lang": lang, "error": "",
                 "ability_accuracy": 100 * report.accuracy(language=lang), "drift": drift.get(lang, float("nan")),
                 "seconds_eval": seconds} for lang in self.languages]


def fact_rows(lm: LoadedModel, reference: Reference, fact: Fact, base: dict, edit: Edit | None) -> list[dict]:
    """The fact scored in every target language on the model as it is now, one row per target."""
    if base["role"] == "unedited":
        summary = reference.unedited(fact)
    else:
        targets = target_languages(fact, reference.config)
        summary = evaluate(lm, fact, targets, edit=edit, source_language=base["source_lang"]).summary.to_dict("records")
    before = reference.before(fact)
    return [
        {**base, **before.get(row["target_lang"], {}), "fact_id": fact.example_id, "target_lang": row["target_lang"],
         **{m: row[m] for m in store.METRIC_COLUMNS}, "es_definition": row["es_definition"],
         "p_new": row["p_new"], "p_true": row["p_true"], "answer": row["answer"]}
        for row in summary
    ]


def failure_rows(base: dict, fact: Fact, targets: Sequence[str], err: Exception) -> list[dict]:
    steps = len(err.trace) if isinstance(err, EditDivergedError) else 0
    return [{**base, "fact_id": fact.example_id, "target_lang": t, "edit_steps": steps,
             "error": f"{type(err).__name__}: {err}"} for t in targets]


def unedited_step(lm: LoadedModel, reference: Reference, facts: Sequence[Fact], base: dict) -> list[dict]:
    """Step 0: every fact of the chain on the unedited model, then its ability (drift 0)."""
    start = time.perf_counter()
    rows = [r for fact in facts for r in fact_rows(lm, reference, fact, {**base, "role": "unedited"}, None)]
    return rows + reference.model_rows(base, None, time.perf_counter() - start)


def row_base(lm: LoadedModel, config: BenchConfig, method: MethodRun, source: str, kind: str, settings: str) -> dict:
    return {
        "method": method.name, "source_lang": source, "model": lm.key, "seed": config.seed, "settings": method.settings,
        "run": kind, "run_settings": settings, "seconds_neurons": 0.0, "seconds_edit": 0.0, "seconds_eval": 0.0,
        "error": "", "health": "", "edit_steps": 0,
    }


# --------------------------------------------------------------------------- the results file


def write_step(config: BenchConfig, rows: list[dict], after_step: StepHook | None, key: tuple[str, str, int]) -> None:
    """Append one step's rows (one write, flushed) and tell ``after_step``."""
    store.append_rows(config.out, rows)
    if after_step:
        after_step(key, rows)


def chain_rows(existing: pd.DataFrame, kind: str, method: str, source: str) -> pd.DataFrame:
    if existing.empty or "run" not in existing:
        return existing.iloc[:0]
    mask = (existing["run"] == kind) & (existing["method"] == method) & (existing["source_lang"] == source)
    return existing[mask]


def complete_steps(rows: pd.DataFrame, languages: Sequence[str]) -> set[int]:
    """Steps whose ``model`` rows are all in the file (they are written last)."""
    model = rows[rows["role"] == "model"]
    have: dict[int, set[str]] = {}
    for step, lang in zip(model["step"], model["target_lang"]):
        have.setdefault(int(step), set()).add(lang)
    return {step for step, langs in have.items() if set(languages) <= langs}


def check_run_settings(rows: pd.DataFrame, settings: str, out: Path, method: str, source: str) -> None:
    found = set(rows["run_settings"]) - {settings}
    if found:
        theirs, ours = json.loads(sorted(found)[0]), json.loads(settings)
        differs = [f"{k} ({theirs.get(k)!r} in the file, {ours.get(k)!r} now)" for k in sorted(set(theirs) | set(ours))
                   if theirs.get(k) != ours.get(k)]
        raise BenchConfigError(
            f"{out} already holds a {ours['kind']} run of '{method}' ({source}) with other run settings: "
            f"{'; '.join(differs)}. Pass --overwrite to discard it, or choose another --out."
        )


def keep_rows(out: Path, existing: pd.DataFrame, drop: pd.Series) -> pd.DataFrame:
    """Rewrite the results file without the rows ``drop`` marks (steps to compute again)."""
    if not drop.any():
        return existing
    log.info("Recomputing from an incomplete step: %d row(s) dropped from %s.", int(drop.sum()), out)
    kept = existing[~drop].reset_index(drop=True)
    store.write_results(out, kept)
    return kept


# --------------------------------------------------------------------------- the entry point


def run_series(
    config: BenchConfig,
    series: SeriesConfig,
    lm: LoadedModel | None = None,
    dataset: MKEBDataset | None = None,
    progress: ProgressFn | None = None,
    after_step: StepHook | None = None,
    cancel: CancelToken | None = None,
) -> SeriesOutcome:
    """Run (or resume) a sequential or batch run; see the module docstring. One process; the
    results file is locked for the run as ``run_bench`` locks it."""
    if series.kind == "batch":
        check_batchable(config.methods)
    check_results_path(config.out)
    config.out.parent.mkdir(parents=True, exist_ok=True)
    owner = lock.run_owner(False)
    lock.acquire(config.out, owner)
    try:
        return _run_locked(config, series, lm, dataset, progress, after_step, cancel)
    finally:
        lock.release(config.out, owner)


def _run_locked(config, series, lm, dataset, progress, after_step, cancel) -> SeriesOutcome:
    from .batch_run import run_batches
    from .sequential import run_chain

    if config.known_only:
        raise BenchConfigError("--known-only is not supported with --sequential or --batch-size; choose the facts "
                               "with --fact-ids instead.")
    dataset = dataset or load_dataset(config.dataset)
    facts = select_facts(dataset, config)
    check_languages(facts, config)
    lm = lm or load_model(config.model)
    methods = [resolve_method(name, lm, config) for name in config.methods]
    existing = store.empty_results(store.SERIES_RESULT_COLUMNS) if config.overwrite else store.read_all(config.out)
    if existing.empty:
        existing = store.empty_results(store.SERIES_RESULT_COLUMNS)
    elif not store.is_series(existing):
        raise BenchConfigError(f"{config.out} holds single-edit rows (`memla bench` without --sequential or "
                               "--batch-size); choose another --out for this run.")
    check_compatible(existing, methods, lm.key, config)
    if config.overwrite:
        config.out.unlink(missing_ok=True)
    chains = {source: chain_facts(facts, source, config, series) for source in config.source_languages}
    languages = list(dict.fromkeys(t for chain in chains.values() for f in chain for t in target_languages(f, config)))
    reference = Reference(lm, config, series, languages)
    run = run_chain if series.kind == "sequential" else run_batches
    totals = [0, 0, 0]
    for method in methods:
        for source, chain in chains.items():
            existing, counts = run(lm, reference, method, source, chain, config, series, dataset.facts, existing,
                                   progress, after_step, cancel)
            totals = [a + b for a, b in zip(totals, counts)]
    results = store.read_all(config.out)
    if config.parquet:
        results.to_parquet(config.out.with_suffix(".parquet"), index=False)
    log.info("%s run: %d step(s) computed, %d already done, %d edit(s) failed", series.kind, *totals)
    return SeriesOutcome(results, config.out, *totals)


def chain_facts(facts: Sequence[Fact], source: str, config: BenchConfig, series: SeriesConfig) -> list[Fact]:
    """The facts edited in ``source``: those with a ``source`` version and a target language;
    sequential, the first N; batch, as many whole batches of k as there are."""
    usable = [f for f in facts if source in f.languages and target_languages(f, config)]
    need = series.edits
    if len(usable) < need:
        what = f"{need} edits in a row" if series.kind == "sequential" else f"a batch of {need}"
        raise BenchConfigError(f"{what} in '{source}' needs {need} facts with that language; the selection has "
                               f"{len(usable)}. Select more facts (--limit, --fact-ids, --split) or lower the number.")
    if series.kind == "sequential":
        return usable[:need]
    whole = len(usable) - len(usable) % need
    if whole < len(usable):
        log.info("Batches of %d: the last %d fact(s) make no whole batch and are left out.", need, len(usable) - whole)
    return usable[:whole]
