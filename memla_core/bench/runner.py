"""The benchmark loop: for every (fact, method, source language) edit the unedited model, score
every target language, revert, and append the rows to the results file.

Each group is seeded the same way whatever ran before it, so a resumed or sharded run produces the
same numbers as one uninterrupted process. Knowledge neurons are found once per (fact, source,
neuron settings) and shared by every MEMLA variant of that group (and cached on disk by
``find_neurons`` across runs).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import pandas as pd
from transformers import set_seed

from ..data import MKEBDataset, load_bundled, load_mkeb
from ..data.schema import Fact
from ..data.splits import select_split
from ..editing.base import EditDivergedError, EditError, EditRequest
from ..bounds import check_prompt_lengths, check_results_path
from ..evaluation import evaluate
from ..health import HealthReference, capture_reference, edit_health
from ..models import LoadedModel, load_model
from ..neurons import NeuronConfig, NeuronSets, find_neurons
from ..session import CancelToken
from . import lock, store
from .config import BenchConfig, BenchConfigError, MethodRun, lenient_overrides, resolve_method
from .distributed import ProcessContext, process_context
from .store import KEY_COLUMNS, Key

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int, str], None]
"""``progress(facts_done, facts_total, label)``, called by the main process for its shard."""
GroupHook = Callable[[Key, list[dict]], None]
"""Called after a group's rows are on disk (live display; tests use it to interrupt a run)."""


@dataclass
class BenchOutcome:
    """What a run produced. ``results`` holds every row of the results file on the main process
    (this run's and earlier ones'), and only this process's rows elsewhere."""

    results: pd.DataFrame
    path: Path
    computed: int  # groups computed (main process: by all processes; others: by this one)
    skipped: int  # groups found already done
    failed: int  # computed groups recorded with an error
    process_index: int = 0
    process_count: int = 1

    @property
    def is_main(self) -> bool:
        return self.process_index == 0


def load_dataset(name: str) -> MKEBDataset:
    return load_bundled() if name == "bundled" else load_mkeb(Path(name))


def select_facts(dataset: MKEBDataset, config: BenchConfig) -> list[Fact]:
    """``fact_ids`` in their order (else the dataset's order), then the split (and its
    ``per_relation`` sample, computed over the whole dataset), then the first ``limit``."""
    try:
        facts = [dataset.get(fid) for fid in config.fact_ids] if config.fact_ids else list(dataset)
    except KeyError as err:
        raise BenchConfigError(f"{err.args[0]} Check --fact-ids (`memla facts` lists them).") from None
    if config.split not in (None, "", "all") or config.per_relation:
        try:
            chosen = {f.example_id for f in select_split(list(dataset), config.split, config.per_relation)}
        except ValueError as err:
            raise BenchConfigError(f"{err} (--split / --per-relation)") from None
        facts = [f for f in facts if f.example_id in chosen]
    return facts[: config.limit] if config.limit else facts


def target_languages(fact: Fact, config: BenchConfig) -> tuple[str, ...]:
    if config.target_languages is None:
        return fact.language_codes
    return tuple(code for code in config.target_languages if code in fact.languages)


def check_languages(facts: Sequence[Fact], config: BenchConfig) -> None:
    """Fail early on a language no selected fact has (a typo would otherwise run zero edits)."""
    present = {code for fact in facts for code in fact.languages}
    for label, wanted in (("source", config.source_languages), ("target", config.target_languages or ())):
        missing = [code for code in wanted if code not in present]
        if missing:
            raise BenchConfigError(
                f"{label} language(s) {', '.join(missing)} are in none of the {len(facts)} selected facts; "
                f"they have {', '.join(sorted(present))}."
            )


def expected_groups(
    facts: Sequence[Fact], methods: Sequence[MethodRun], config: BenchConfig
) -> dict[Key, frozenset[str]]:
    """Every group this run covers, with the target languages its rows must hold."""
    groups: dict[Key, frozenset[str]] = {}
    for fact in facts:
        targets = frozenset(target_languages(fact, config))
        for source in config.source_languages:
            if source not in fact.languages or not targets:
                continue
            for method in methods:
                groups[(fact.example_id, method.name, source)] = targets
    return groups


def drop_unknown_sources(
    expected: dict[Key, frozenset[str]], lm: LoadedModel, facts: Sequence[Fact]
) -> dict[Key, frozenset[str]]:
    """``known_only``: keep the groups whose source-language fact the unedited model knows
    (research convention: edit what the model knows). Checks are cached on disk per model."""
    from ..knowledge import check_knowledge, known_pairs

    by_id = {fact.example_id: fact for fact in facts}
    pairs = sorted({(fact_id, source) for fact_id, _, source in expected})
    known: set[tuple[str, str]] = set()
    for source in dict.fromkeys(source for _, source in pairs):
        known |= known_pairs(check_knowledge(lm, [by_id[f] for f, s in pairs if s == source], [source]))
    kept = {key: targets for key, targets in expected.items() if (key[0], key[2]) in known}
    log.info("known_only: %d of %d (fact, source) pairs are known by %s.", len({(k[0], k[2]) for k in kept}), len(pairs), lm.key)
    return kept


def check_compatible(existing: pd.DataFrame, methods: Sequence[MethodRun], model_key: str, config: BenchConfig) -> None:
    """Refuse to mix rows computed with other settings into one results file."""
    for method in methods:
        rows = existing[existing["method"] == method.name]
        if rows.empty:
            continue
        differs = []
        if set(rows["model"]) - {model_key}:
            differs.append(f"model ({', '.join(sorted(set(rows['model'])))} vs {model_key})")
        if set(pd.to_numeric(rows["seed"], errors="coerce").dropna().astype(int)) - {config.seed}:
            differs.append("seed")
        if set(rows["settings"]) - {method.settings}:
            differs.append(f"settings (now {method.settings})")
        if differs:
            raise BenchConfigError(
                f"{config.out} already holds '{method.name}' rows computed with another {' and '.join(differs)}. "
                "Pass --overwrite (overwrite=True) to discard them, or choose another --out."
            )


def prepare_results_file(out: Path, existing: pd.DataFrame, expected: Mapping[Key, frozenset[str]]) -> None:
    """Main process, before anyone writes: fold leftover part files into ``out`` and drop groups
    that a crash left half-written, so that every writer starts from a clean file."""
    parts = store.part_paths(out)
    if existing.empty and not out.exists() and not parts:
        return
    partial = store.incomplete_keys(existing, expected)
    if partial:
        log.info("Recomputing %d group(s) that were written only in part.", len(partial))
    store.write_results(out, store.drop_keys(existing, partial))
    for path in parts:
        path.unlink()


def _failure_rows(base: dict, targets: Sequence[str], err: Exception) -> list[dict]:
    steps = len(err.trace) if isinstance(err, EditDivergedError) else 0
    return [{**base, "target_lang": t, "edit_steps": steps, "error": f"{type(err).__name__}: {err}"} for t in targets]


def unedited_scores(lm: LoadedModel, fact: Fact, targets: Sequence[str]) -> dict[str, dict[str, object]]:
    """The unedited model's ES/PS/NS/QS, P(new), P(true) and answer per target language, as the
    ``*_before`` columns: what an edit changed is after − before on the same prompts."""
    report = evaluate(lm, fact, list(targets))
    before = {}
    for row in report.summary.to_dict("records"):
        before[row["target_lang"]] = {
            **{f"{m}_before": row[m] for m in store.METRIC_COLUMNS},
            "p_new_before": row["p_new"], "p_true_before": row["p_true"], "answer_before": row["answer"],
        }
    return before


class UneditedFact:
    """What the unedited model does on one fact — its scores (the ``*_before`` columns) and the
    health check's reference distributions — computed on the first group that needs each and
    shared by every source, method and configuration of the fact: a sweep pays for them once."""

    def __init__(self, lm: LoadedModel, fact: Fact, targets: Sequence[str], previous: "UneditedFact | None" = None):
        self.lm, self.fact, self.targets = lm, fact, list(targets)
        self._scores: dict[str, dict[str, object]] | None = None
        self._reference: HealthReference | None = None
        # The reference's ordinary sentences are the same for every fact: an earlier fact's lend theirs
        # (passed on through facts whose groups were all done before, which capture nothing).
        self._base = (previous._reference or previous._base) if previous is not None else None

    def scores(self) -> Mapping[str, Mapping[str, object]]:
        if self._scores is None:
            with self.lm.lock:
                self._scores = unedited_scores(self.lm, self.fact, self.targets)
        return self._scores

    def health_reference(self) -> HealthReference:
        """Call it with the model unedited (``run_group`` does, before applying the edit)."""
        if self._reference is None:
            self._reference = capture_reference(self.lm, self.fact, self.targets, base=self._base)
        return self._reference


def run_group(
    lm: LoadedModel,
    fact: Fact,
    source: str,
    method: MethodRun,
    targets: Sequence[str],
    config: BenchConfig,
    neuron_sets: dict[NeuronConfig, NeuronSets],
    pool: Sequence[Fact] | None = None,
    cancel: CancelToken | None = None,
    unedited: UneditedFact | None = None,
) -> list[dict]:
    """Edit, evaluate in every target, revert: the rows of one (fact, method, source) group.

    ``neuron_sets`` is shared by the groups of one (fact, source); the first MEMLA variant fills it.
    ``pool`` is the dataset in-context methods draw demonstrations from. ``cancel`` stops the
    group between optimisation steps or neuron prompts (``Cancelled``; the model is left unedited).
    The whole group holds ``lm.lock``: in the app other sessions share the model, and must never
    run it while this group's edit is written into the weights.
    """
    set_seed(config.seed)  # same randomness whatever ran before: resumed and sharded runs agree
    base = {
        "fact_id": fact.example_id, "method": method.name, "source_lang": source,
        "model": lm.key, "seed": config.seed, "settings": method.settings,
        "seconds_neurons": 0.0, "seconds_edit": 0.0, "seconds_eval": 0.0, "error": "", "health": "",
    }

    def check(*_args) -> None:
        if cancel is not None:
            cancel.check()

    check()  # before waiting for the model: a stopped run starts no new group
    try:
        check_prompt_lengths(lm.tokenizer, fact, [source, *targets])  # before minutes of work on a huge prompt
        with lm.lock:
            neurons = None
            if method.uses_neurons:
                neuron_config = method.config.neurons
                if neuron_config not in neuron_sets:
                    start = time.perf_counter()
                    neuron_sets[neuron_config] = find_neurons(lm, fact, source, neuron_config, progress=check)
                    base["seconds_neurons"] = time.perf_counter() - start
                neurons = neuron_sets[neuron_config]
            start = time.perf_counter()
            edit = method.editor(neurons, pool).compute(lm, EditRequest(fact, source), on_step=check)
            base["seconds_edit"] = time.perf_counter() - start
            check()
            start = time.perf_counter()
            with edit.applied(lm):
                report = evaluate(lm, fact, list(targets), edit=edit, source_language=source)
            reference = unedited.health_reference() if unedited is not None else None
            base["health"] = edit_health(lm, edit, fact, list(targets), reference=reference).label
            base["seconds_eval"] = time.perf_counter() - start
    except EditError as err:
        log.info("%s on %s (%s) failed: %s", method.name, fact.example_id, source, err)
        return _failure_rows(base, targets, err)
    except ValueError as err:  # data a method cannot handle (e.g. an answer with no tokens)
        log.warning("%s on %s (%s) failed", method.name, fact.example_id, source, exc_info=True)
        return _failure_rows(base, targets, err)
    before = unedited.scores() if unedited is not None else {}
    rows = []
    for summary in report.summary.to_dict("records"):
        rows.append(
            {
                **base,
                **before.get(summary["target_lang"], {}),
                "target_lang": summary["target_lang"],
                **{m: summary[m] for m in store.METRIC_COLUMNS},
                "es_definition": summary["es_definition"],
                "p_new": summary["p_new"],
                "p_true": summary["p_true"],
                "answer": summary["answer"],
                "edit_steps": len(edit.trace),
            }
        )
    return rows


def order_results(frame: pd.DataFrame, facts: Sequence[Fact], methods: Sequence[MethodRun], config: BenchConfig) -> pd.DataFrame:
    """Rows in run order (fact, method, source), rows of other runs after; targets as written."""
    ranks = {
        "fact_id": {f.example_id: i for i, f in enumerate(facts)},
        "method": {m.name: i for i, m in enumerate(methods)},
        "source_lang": {s: i for i, s in enumerate(config.source_languages)},
    }
    keys = pd.DataFrame({c: frame[c].map(ranks[c]).fillna(len(ranks[c])) for c in KEY_COLUMNS})
    order = keys.assign(_row=range(len(frame))).sort_values([*KEY_COLUMNS, "_row"], kind="mergesort").index
    return frame.loc[order].reset_index(drop=True)


def run_bench(
    config: BenchConfig,
    lm: LoadedModel | None = None,
    dataset: MKEBDataset | None = None,
    progress: ProgressFn | None = None,
    after_group: GroupHook | None = None,
    context: ProcessContext | None = None,
    cancel: CancelToken | None = None,
) -> BenchOutcome:
    """Run (or resume) a benchmark; see the module docstring. Pass ``lm``/``dataset`` to reuse
    loaded ones; under ``accelerate launch`` each process loads the model on its own device.

    ``cancel`` (single process only: other processes would wait at the barrier) stops the run
    with ``Cancelled`` within one optimisation step; every finished group is already on disk,
    so running the same config again resumes.

    The results file is locked for the run (``<out>.lock``, see ``bench.lock``): a second run on it
    is refused with the holder's PID and start time before any work.
    """
    ctx = context or process_context(config.model.device, config.barrier_timeout_s)
    check_results_path(config.out)
    config.out.parent.mkdir(parents=True, exist_ok=True)
    owner = lock.run_owner(ctx.distributed)  # every worker of one accelerate launch shares the lock
    lock.acquire(config.out, owner)
    try:
        return _run_locked(config, lm, dataset, progress, after_group, ctx, cancel)
    finally:
        if ctx.is_main:
            lock.release(config.out, owner)


def _run_locked(
    config: BenchConfig,
    lm: LoadedModel | None,
    dataset: MKEBDataset | None,
    progress: ProgressFn | None,
    after_group: GroupHook | None,
    ctx: ProcessContext,
    cancel: CancelToken | None,
) -> BenchOutcome:
    dataset = dataset or load_dataset(config.dataset)
    facts = select_facts(dataset, config)
    check_languages(facts, config)
    if lm is None:
        spec = dataclasses.replace(config.model, device=ctx.device) if ctx.device else config.model
        lm = load_model(spec)
    methods = [resolve_method(name, lm, config) for name in config.methods]
    for path in lenient_overrides(config):
        if path != "seed" and not any(m.has_setting(path) for m in methods):
            log.warning("Setting '%s' matches no field of %s; it is ignored.", path, ", ".join(config.methods))
    expected = expected_groups(facts, methods, config)
    if config.known_only:
        expected = drop_unknown_sources(expected, lm, facts)
    out = config.out
    out.parent.mkdir(parents=True, exist_ok=True)

    existing = store.empty_results() if config.overwrite else store.read_all(out)
    if store.is_series(existing):
        raise BenchConfigError(f"{out} holds a sequential or batch run (`memla bench --sequential` / --batch-size); "
                               "choose another --out for single edits.")
    check_compatible(existing, methods, lm.key, config)
    ctx.wait()  # everyone has read the old files before the main process rewrites them
    if ctx.is_main:
        if config.overwrite:
            for path in [out, *store.part_paths(out)]:
                path.unlink(missing_ok=True)
        else:
            prepare_results_file(out, existing, expected)
    ctx.wait()
    done = store.completed_keys(store.read_results(out), expected)
    writer = store.part_path(out, ctx.index) if ctx.distributed else out

    shard = ctx.shard(facts)
    computed = skipped = failed = 0
    own_rows: list[dict] = []
    unedited: UneditedFact | None = None
    for number, fact in enumerate(shard):
        if progress and ctx.is_main:
            progress(number, len(shard), fact.label)
        targets = target_languages(fact, config)
        unedited = UneditedFact(lm, fact, targets, previous=unedited)
        for source in config.source_languages:
            if (fact.example_id, methods[0].name, source) not in expected:
                log.info("Fact %s: no '%s' version, no target language, or (known_only) not known there; skipped.",
                         fact.example_id, source)
                continue
            neuron_sets: dict[NeuronConfig, NeuronSets] = {}
            for method in methods:
                key = (fact.example_id, method.name, source)
                if key in done:
                    skipped += 1
                    continue
                rows = run_group(lm, fact, source, method, targets, config, neuron_sets, dataset.facts, cancel, unedited)
                store.append_rows(writer, rows)
                own_rows += rows
                computed += 1
                failed += bool(rows and rows[0]["error"])
                if after_group:
                    after_group(key, rows)
    if progress and ctx.is_main:
        progress(len(shard), len(shard), "done")

    ctx.wait()  # every shard is on disk
    if ctx.is_main:
        results = order_results(store.read_all(out), facts, methods, config)
        store.write_results(out, results)
        for path in store.part_paths(out):
            path.unlink()
        if config.parquet:
            results.to_parquet(out.with_suffix(".parquet"), index=False)
        if ctx.distributed:  # report totals over every process, not the main one's shard
            new_keys = store.completed_keys(results, expected) - done
            errors = results[results["error"] != ""]
            failed = len(new_keys & set(errors[list(KEY_COLUMNS)].itertuples(index=False, name=None)))
            computed, skipped = len(new_keys), len(done)
    else:
        results = store.rows_frame(own_rows)
    log.info("bench: %d group(s) computed (%d failed), %d already done", computed, failed, skipped)
    return BenchOutcome(results, out, computed, skipped, failed, ctx.index, ctx.count)
