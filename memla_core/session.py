"""One shared model, many users: each user's edit touches the weights only while that user computes.

The app loads a model once per process and every browser session uses it. A session keeps its
own ``Edit`` (never in a process-wide cache) and runs the model through ``edited(lm, edit)``,
which holds ``lm.lock`` for the whole block: while one session's edit is written into the
weights no other session can run the model, and the weights are restored before the lock is
released. Every function here goes through ``edited``, so "before" answers always come from the
unedited weights, whatever other sessions are doing.

A session may also keep an edit stack (``memla_core.stack_session``): its edits, applied in order
under the edit being computed or scored (``under=``), again only inside ``edited``.

Long work takes a ``CancelToken`` and checks it between steps (one prompt attribution, one
optimisation step, one language of evaluation).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator, Sequence

import pandas as pd

from .data.schema import Fact
from .editing import Edit, EditRequest, build_editor
from .editing.base import StepFn
from .editing.stack import EditStack, stacked_context
from .bounds import check_prompt_lengths, check_text_length
from .evaluation import EvalReport, evaluate
from .health import EditHealth, HealthReference, capture_reference, edit_health
from .models import LoadedModel
from .neurons import NeuronConfig, NeuronSets, ProgressFn, find_neurons
from .scoring import encode_prompt, greedy_generate


class Cancelled(RuntimeError):
    """Work stopped at the user's request; the model is left as it was."""


class CancelToken:
    """A flag another thread (or a stop button) sets; long work calls ``check()`` between steps."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled("Stopped on request; nothing was changed.")


def _checked(cancel: CancelToken | None) -> None:
    if cancel is not None:
        cancel.check()


@contextmanager
def edited(lm: LoadedModel, edit: Edit | None, under: Sequence[Edit] = ()) -> Iterator[LoadedModel]:
    """Run the shared model with ``edit`` applied (``None``: unedited), exclusively.

    ``under``: edits applied first, in order (a session's edit stack); ``edit`` goes on top. On
    exit every weight they touched is copied back, newest first, so the model is bit for bit as
    before. The lock is re-entrant, so core functions that lock again inside the block are fine.
    """
    with lm.lock:
        stack = EditStack(lm)
        try:
            for each in (*under, *([edit] if edit is not None else [])):
                if each.weight_deltas:
                    stack.push_edit(each)
            yield lm
        finally:
            stack.revert_all()


def as_scored(edit: Edit | None, under: Sequence[Edit] = ()) -> Edit | None:
    """``edit`` as ``evaluate`` must see it on top of ``under``: its own weight deltas and every
    in-context edit's context, stacked (``stack.stacked_context``). Without ``edit``: the stack's
    contexts alone (``None`` without a stack)."""
    if not under:
        return edit
    edits = [*under, *([edit] if edit is not None else [])]
    context = stacked_context(edits)
    query = next((e.context_query for e in reversed(edits) if e.context), "")
    if edit is None:
        newest = under[-1]
        return Edit(method="stack", fact_id=newest.fact_id, source_language=newest.source_language,
                    context=context, context_query=query)
    return edit if context == edit.context else replace(edit, context=context, context_query=query)


def compute_neurons(
    lm: LoadedModel,
    fact: Fact,
    source_language: str,
    config: NeuronConfig,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> NeuronSets:
    """``find_neurons`` on the unedited model, stoppable between prompts (results are disk-cached)."""

    def report(done: int, total: int, what: str) -> None:
        _checked(cancel)
        if progress:
            progress(done, total, what)

    check_prompt_lengths(lm.tokenizer, fact, [source_language])
    # The whole search holds the lock: a fact without target_true is first answered by the model,
    # and that answer must come from the unedited weights too.
    with edited(lm, None):
        return find_neurons(lm, fact, source_language, config, progress=report)


def compute_edit(
    lm: LoadedModel,
    request: EditRequest,
    method: str,
    config: Any | None = None,
    neurons: NeuronSets | None = None,
    on_step: StepFn | None = None,
    cancel: CancelToken | None = None,
    pool: Sequence[Fact] | None = None,
    under: Sequence[Edit] = (),
) -> Edit:
    """Compute (not apply) an edit on the unedited model, or on top of ``under`` (the session's
    edit stack, applied for the computation only); ``cancel`` stops it between steps."""
    editor = build_editor(method, config, neurons, pool)

    def step(record: dict[str, float]) -> None:
        _checked(cancel)
        if on_step:
            on_step(record)

    _checked(cancel)
    check_prompt_lengths(lm.tokenizer, request.fact, [request.source_language])
    with edited(lm, None, under):
        return editor.compute(lm, request, on_step=step)


LANGUAGES_PER_PASS = 4
"""Languages scored together: batches full enough to cost what one 12-language pass costs on a
CPU (benchmarks/edit_speed.py), yet a progress update and a chance to stop every few seconds."""


def evaluate_fact(
    lm: LoadedModel,
    fact: Fact,
    languages: Sequence[str],
    edit: Edit | None = None,
    source_language: str | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    cancel: CancelToken | None = None,
    under: Sequence[Edit] = (),
) -> EvalReport:
    """ES/PS/NS/QS of ``fact`` with ``edit`` applied (``None``: unedited), ``LANGUAGES_PER_PASS``
    languages at a time; ``under``: the session's edit stack, applied beneath ``edit``."""
    scored = as_scored(edit, under)
    languages = list(languages)
    source = source_language or (scored.source_language if scored else languages[0])
    check_prompt_lengths(lm.tokenizer, fact, languages)
    reports = []
    for start in range(0, len(languages), LANGUAGES_PER_PASS):
        _checked(cancel)
        part = languages[start : start + LANGUAGES_PER_PASS]
        if progress:
            progress(start, len(languages), ", ".join(part))
        with edited(lm, edit, under):
            reports.append(evaluate(lm, fact, part, edit=scored, source_language=source))
    if progress:
        progress(len(languages), len(languages), "done")
    return merge_reports(reports)


def check_edit_health(
    lm: LoadedModel,
    fact: Fact,
    edit: Edit,
    languages: Sequence[str],
    under: Sequence[Edit] = (),
    reference: HealthReference | None = None,
) -> EditHealth:
    """``edit_health`` on the shared model: the reference comes from the unedited weights (or the
    session's stack ``under``) whatever other sessions do (the whole check holds the lock).
    ``reference``: one captured before by ``health_reference`` with the same ``under``."""
    with edited(lm, None, under):
        return edit_health(lm, as_scored(edit, under), fact, languages, reference=reference)


def health_reference(
    lm: LoadedModel,
    fact: Fact | None,
    languages: Sequence[str],
    under: Sequence[Edit] = (),
    base: HealthReference | None = None,
) -> HealthReference:
    """The health check's reference on the unedited model (or under the stack ``under``): it does
    not depend on the edit, so callers that check several edits capture it once; ``base``, one
    captured before under the same stack, lends its fact-independent part."""
    with edited(lm, None, under):
        return capture_reference(lm, fact, languages, base=base)


def merge_reports(reports: Sequence[EvalReport]) -> EvalReport:
    """Reports of disjoint language sets as one report."""
    return EvalReport(
        pd.concat([r.summary for r in reports], ignore_index=True),
        pd.concat([r.details for r in reports], ignore_index=True),
    )


def generate_text(
    lm: LoadedModel, prompt: str, max_new_tokens: int = 20, edit: Edit | None = None, under: Sequence[Edit] = ()
) -> str:
    """Greedy continuation of free text by the model, with ``edit`` (on top of ``under``, the
    session's edit stack) applied for this call only."""
    check_text_length(lm.tokenizer, prompt)
    scored = as_scored(edit, under)
    text = f"{scored.context}{prompt}" if scored is not None and scored.context else prompt
    eos = lm.tokenizer.eos_token_id
    with edited(lm, edit, under):
        out = greedy_generate(lm, [encode_prompt(lm, text)], [max_new_tokens])[0]
    if eos in out:  # generation is forced to max_new_tokens; what follows EOS is noise
        out = out[: out.index(eos)]
    return lm.tokenizer.decode(out, skip_special_tokens=True).strip()


@dataclass
class EditOutcome:
    """One method's edit of one fact with its scores before and after (kept per session)."""

    edit: Edit
    before: EvalReport
    after: EvalReport
    health: EditHealth | None = None  # None: not measured (outcomes kept from before the check)

    @property
    def method(self) -> str:
        return self.edit.method
