"""``memla bench --batch-size k``: the facts in whole batches of k (in selection order), each
batch one edit of the unedited model (``BatchEditRequest``), scored per fact in every target
language and with the model's ability and drift, then reverted. Step 0 is the unedited model;
step b the b-th batch. Batches are independent, so a resumed run computes only the batches whose
rows are not complete in the file. Only methods whose registry entry is ``batchable`` run
(``series.check_batchable`` refuses the others before the model loads).
"""

from __future__ import annotations

import time
from typing import Sequence

import pandas as pd
from transformers import set_seed

from ..data.schema import Fact
from ..editing.base import BatchEditRequest, EditError
from ..editing.batch import compute_request
from ..models import LoadedModel
from ..session import CancelToken
from . import store
from .config import BenchConfig, MethodRun
from .runner import target_languages
from .series import (
    ProgressFn, Reference, SeriesConfig, StepHook, chain_rows, check_run_settings, complete_steps, fact_rows,
    failure_rows, keep_rows, row_base, unedited_step, write_step,
)


def run_batches(
    lm: LoadedModel, reference: Reference, method: MethodRun, source: str, facts: Sequence[Fact], config: BenchConfig,
    series: SeriesConfig, pool, existing: pd.DataFrame, progress: ProgressFn | None, after_step: StepHook | None,
    cancel: CancelToken | None,
) -> tuple[pd.DataFrame, tuple[int, int, int]]:
    """Compute (or finish) one method's batches in ``source``; returns the file's rows as they
    are now and (steps computed, steps found done, failed batch edits)."""
    k = series.edits
    batches = [tuple(facts[i : i + k]) for i in range(0, len(facts), k)]
    settings = series.settings([f.example_id for f in facts])
    rows = chain_rows(existing, "batch", method.name, source)
    check_run_settings(rows, settings, config.out, method.name, source)
    done = complete_steps(rows, reference.languages)
    if not rows.empty:
        partial = existing.index.isin(rows.index) & ~pd.to_numeric(existing["step"], errors="coerce").isin(done)
        existing = keep_rows(config.out, existing, partial)
    todo = [step for step in range(len(batches) + 1) if step not in done]
    if not todo:
        return existing, (0, len(done), 0)

    def check(*_args) -> None:
        if cancel is not None:
            cancel.check()

    base = row_base(lm, config, method, source, "batch", settings)
    computed = failed = 0
    with lm.lock:
        reference.prepare(facts)
        for step in todo:
            check()
            key = (method.name, source, step)
            if step == 0:
                write_step(config, unedited_step(lm, reference, facts, {**base, "step": 0, "edits": 0}), after_step, key)
                computed += 1
                continue
            if progress:
                progress(step, len(batches), f"{method.name} ({source}): batch {step} of {len(batches)}")
            step_rows = _batch_step(lm, reference, method, source, batches[step - 1], {**base, "step": step, "edits": k},
                                    config, pool, check)
            failed += bool(step_rows[0]["error"])
            write_step(config, step_rows, after_step, key)
            computed += 1
    return store.read_all(config.out), (computed, len(done), failed)


def _batch_step(lm, reference: Reference, method: MethodRun, source: str, batch: tuple[Fact, ...], base: dict,
                config: BenchConfig, pool, check) -> list[dict]:
    """Edit the batch, score each of its facts and the model, revert."""
    set_seed(config.seed)  # every batch seeded alike, whatever ran before: resumed runs agree
    start = time.perf_counter()
    fact_base = {**base, "role": "batch"}
    try:
        edit = compute_request(method.editor(None, pool), lm, BatchEditRequest(batch, source), on_step=check)
    except (EditError, ValueError) as err:  # ValueError: data a method cannot handle
        seconds = time.perf_counter() - start
        rows = [r for fact in batch
                for r in failure_rows({**fact_base, "seconds_edit": seconds}, fact, target_languages(fact, config), err)]
        return rows + reference.model_rows(base, None, 0.0, error=rows[0]["error"])
    fact_base.update(seconds_edit=time.perf_counter() - start, edit_steps=len(edit.trace))
    start = time.perf_counter()
    with edit.applied(lm):
        rows = [r for fact in batch for r in fact_rows(lm, reference, fact, fact_base, edit)]
        return rows + reference.model_rows(base, edit, time.perf_counter() - start)

