"""``memla bench --sequential N --eval-every E``: one method's N edits pushed one after another
on an ``EditStack`` (no revert between), scored at step 0 (unedited), every E-th step and the
last: every edit still on the stack in every target language (the newest one and the earlier
ones: retention), and the model's ability and drift.

Each push is seeded the same way (``set_seed(config.seed)``), and MEMLA's knowledge neurons of
every fact are found on the unedited model before the first push (as sequential MEMIT keeps the
unedited model's statistics), so the weights after step s depend only on the settings and the
first s facts. That is what makes resuming exact: a stopped run keeps the steps it completed;
the next run replays the pushes up to the last complete evaluated step, without writing or
scoring them (they are computed again: minutes for MEMLA), and continues from there. Rows after
that step (a failed push's row, a step cut off by the stop) are dropped and written again.
An edit that fails is recorded at its step (role ``newest``, ``error``) and is not on the stack:
later steps do not count it among the earlier edits.
"""

from __future__ import annotations

import time
from typing import Sequence

import pandas as pd
from transformers import set_seed

from ..data.schema import Fact
from ..editing.base import EditError, EditRequest
from ..editing.stack import EditStack
from ..models import LoadedModel
from ..neurons import find_neurons
from ..session import CancelToken
from . import store
from .config import BenchConfig, MethodRun
from .series import (
    ProgressFn, Reference, SeriesConfig, StepHook, chain_rows, check_run_settings, complete_steps, fact_rows,
    failure_rows, keep_rows, row_base, unedited_step, write_step,
)
from .runner import target_languages


def resume_point(rows: pd.DataFrame, series: SeriesConfig, languages: Sequence[str]) -> int:
    """The last evaluated step up to which every evaluated step is complete (-1: none is)."""
    done = complete_steps(rows, languages)
    last = -1
    for step in series.eval_steps():
        if step not in done:
            break
        last = step
    return last


def run_chain(
    lm: LoadedModel, reference: Reference, method: MethodRun, source: str, facts: Sequence[Fact], config: BenchConfig,
    series: SeriesConfig, pool, existing: pd.DataFrame, progress: ProgressFn | None, after_step: StepHook | None,
    cancel: CancelToken | None,
) -> tuple[pd.DataFrame, tuple[int, int, int]]:
    """Compute (or finish) one method's chain in ``source``; returns the file's rows as they are
    now and (steps computed, steps found done, failed edits)."""
    settings = series.settings([f.example_id for f in facts])
    rows = chain_rows(existing, "sequential", method.name, source)
    check_run_settings(rows, settings, config.out, method.name, source)
    resume = resume_point(rows, series, reference.languages)
    if not rows.empty:
        later = (existing.index.isin(rows.index)) & (pd.to_numeric(existing["step"], errors="coerce") > resume)
        existing = keep_rows(config.out, existing, later)
    skipped = sum(1 for s in series.eval_steps() if s <= resume)
    if resume == series.edits:
        return existing, (0, skipped, 0)

    def check(*_args) -> None:
        if cancel is not None:
            cancel.check()

    base = row_base(lm, config, method, source, "sequential", settings)
    label = f"{method.name} ({source})"
    computed = failed = 0
    with lm.lock:
        reference.prepare(facts)  # unedited scores, before any push
        neurons, neuron_seconds = {}, {}
        if method.uses_neurons:  # on the unedited model, before any push (see the module docstring)
            for fact in facts:
                start = time.perf_counter()
                neurons[fact.example_id] = find_neurons(lm, fact, source, method.config.neurons, progress=check)
                neuron_seconds[fact.example_id] = time.perf_counter() - start
        if resume < 0:
            step_rows = unedited_step(lm, reference, facts, {**base, "step": 0, "edits": 0})
            write_step(config, step_rows, after_step, (method.name, source, 0))
            computed += 1
        stack = EditStack(lm)
        held: list[Fact] = []
        try:
            for step, fact in enumerate(facts, start=1):
                check()
                if progress:
                    progress(step, len(facts), f"{label}: edit {step} of {len(facts)}")
                set_seed(config.seed)  # each push seeded alike: a replayed push computes the same edit
                start = time.perf_counter()
                error: Exception | None = None
                try:
                    editor = method.editor(neurons.get(fact.example_id), pool)
                    edit = stack.push(editor, EditRequest(fact, source), on_step=check)
                except (EditError, ValueError) as err:  # ValueError: data a method cannot handle
                    error = err
                seconds = time.perf_counter() - start
                failed += error is not None and step > resume
                if step <= resume:  # replayed: its rows are in the file
                    if error is None:
                        held.append(fact)
                    continue
                step_base = {**base, "step": step, "edits": step,
                             "seconds_neurons": neuron_seconds.get(fact.example_id, 0.0)}
                newest = {**step_base, "role": "newest", "seconds_edit": seconds}
                targets = target_languages(fact, config)
                if step not in series.eval_steps():
                    if error is not None:
                        write_step(config, failure_rows(newest, fact, targets, error), after_step, (method.name, source, step))
                    else:
                        held.append(fact)
                    continue
                step_rows = _evaluated_step(lm, reference, stack, source, held, fact, newest, step_base, error)
                if error is None:
                    held.append(fact)
                write_step(config, step_rows, after_step, (method.name, source, step))
                computed += 1
        finally:
            stack.revert_all()
    return store.read_all(config.out), (computed, skipped, failed)


def _evaluated_step(lm, reference: Reference, stack: EditStack, source: str, held: list[Fact], fact: Fact,
                    newest: dict, step_base: dict, error: Exception | None) -> list[dict]:
    """The newest edit's rows, every earlier edit's (retention), then the model rows."""
    start = time.perf_counter()
    context = stack.evaluation_edit(source)
    if error is None:
        rows = fact_rows(lm, reference, fact, {**newest, "edit_steps": len(stack.edits[-1].trace)}, context)
    else:
        rows = failure_rows(newest, fact, target_languages(fact, reference.config), error)
    for earlier in held:
        rows += fact_rows(lm, reference, earlier, {**step_base, "role": "earlier"}, context)
    return rows + reference.model_rows(step_base, context, time.perf_counter() - start)

