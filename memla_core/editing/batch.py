"""Batch edits: one ``Edit`` that changes k facts at once.

A ``BatchEditRequest`` (in ``base``) names k facts in one source language. An editor that can
batch has ``compute_batch(lm, batch, on_step) -> Edit`` beside ``compute``, and its registry
entry says ``batchable=True``; the edit it returns is an ordinary ``Edit`` (weight deltas and/or
a context), applied, reverted and exported like a single-fact one. How each method batches:

- MEMLA: the union of the facts' knowledge neurons (``memla.union_of_neurons``) and one loss,
  the mean of the facts' losses, over all their edit prompts;
- FT-L: the mean of the facts' losses;
- MEMIT, PMET: one value change δ per fact, then per layer one least-squares update for all
  the facts' keys at once (the mass edit of MEMIT's paper);
- IKE: one context stating every fact after the demonstrations.

Each of them computes a batch of one exactly as the single edit. A method without
``compute_batch`` (ROME, MEND) refuses a batch with ``BatchNotSupportedError``, which names the
methods that can; ``EditStack`` (``stack``) applies such edits one after another instead.
"""

from __future__ import annotations

from typing import Any, Protocol

from ..models import LoadedModel
from .base import BatchEditRequest, Edit, EditError, EditRequest, StepFn


class BatchNotSupportedError(EditError):
    """A batch request for a method that edits one fact at a time."""


class BatchEditor(Protocol):
    """An editor that can also edit k facts at once."""

    name: str

    def compute(self, lm: LoadedModel, request: EditRequest, on_step: StepFn | None = None) -> Edit: ...

    def compute_batch(self, lm: LoadedModel, batch: BatchEditRequest, on_step: StepFn | None = None) -> Edit: ...


def batchable_methods() -> tuple[str, ...]:
    """Names of the registered methods that batch."""
    from .registry import METHODS  # the registry imports every editor, which import this module

    return tuple(name for name, spec in METHODS.items() if spec.batchable)


def batch_refusal(method: str) -> BatchNotSupportedError:
    """The error for a batch given to ``method`` (a title or name), naming the methods that can."""
    from .registry import METHODS

    able = ", ".join(f"{spec.title} ({spec.name})" for spec in METHODS.values() if spec.batchable)
    return BatchNotSupportedError(
        f"{method} edits one fact at a time and cannot edit a batch; methods that can: {able}. "
        "To edit several facts with it, push single edits onto an EditStack (memla_core.editing.stack)."
    )


def compute_request(
    editor: Any, lm: LoadedModel, request: EditRequest | BatchEditRequest, on_step: StepFn | None = None
) -> Edit:
    """``editor.compute`` for one fact, ``editor.compute_batch`` for a batch; an editor without
    ``compute_batch`` refuses a batch (``BatchNotSupportedError``) before any work."""
    if isinstance(request, BatchEditRequest):
        compute_batch = getattr(editor, "compute_batch", None)
        if compute_batch is None:
            raise batch_refusal(_title(editor))
        return compute_batch(lm, request, on_step)
    return editor.compute(lm, request, on_step)


def _title(editor: Any) -> str:
    from .registry import METHODS

    name = getattr(editor, "name", type(editor).__name__)
    spec = METHODS.get(name)
    return spec.title if spec is not None else name


# --------------------------------------------------------------------------- traces of batches


def fact_step(on_step: StepFn | None, index: int, count: int) -> StepFn | None:
    """``on_step`` for the ``index``-th of ``count`` facts optimised one after another: its
    records carry ``"fact": index`` when there is more than one fact."""
    if on_step is None or count == 1:
        return on_step
    return lambda record: on_step({**record, "fact": index})


def fact_trace(trace: list[dict[str, float]], index: int, count: int) -> list[dict[str, float]]:
    """A per-fact trace as part of a batch's trace (``"fact": index`` when k > 1)."""
    return trace if count == 1 else [{**record, "fact": index} for record in trace]


def mean(values: list[float]) -> float:
    """The plain mean, exactly the value itself for one value (a batch of one traces as a single edit)."""
    return sum(values) / len(values)
