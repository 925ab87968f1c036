"""Sequential edits: an edit stack on one loaded model.

``push`` computes an edit on the model as it is now, that is with every earlier edit of the
stack in its weights, and applies it; ``pop`` reverts the newest edit; ``revert_all`` pops
them all. Each is exact: an applied edit keeps a copy of every weight it touches
(``AppliedEdit``), and popping in reverse order copies them back, so after a pop the weights
are bit for bit what they were before the matching push.

In-context edits (IKE) change no weight: their contexts stack. ``context`` joins them oldest
first and keeps the text that introduces the prompt (``Edit.context_query``, IKE's
"Prompt: ") once, at the end; ``evaluation_edit`` hands that context to ``evaluate``.

Every method stacks, batchable or not, and a push may be a ``BatchEditRequest`` for the
methods that batch. Cached knowledge neurons and key statistics are keyed by the model, not its
current weights: where they were found on the unedited model, a push reuses them (as
sequential MEMIT keeps the unedited model's statistics).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from ..models import LoadedModel
from .base import AppliedEdit, BatchEditRequest, Edit, EditError, EditRequest, StepFn
from .batch import compute_request


@dataclass(frozen=True)
class StackEntry:
    edit: Edit
    applied: AppliedEdit


def stacked_context(edits: Sequence[Edit]) -> str:
    """The contexts of ``edits`` in order, each but the last without its ``context_query``."""
    contexts = [e for e in edits if e.context]
    if not contexts:
        return ""
    earlier = [e.context.removesuffix(e.context_query) if e.context_query else e.context for e in contexts[:-1]]
    return "".join(earlier) + contexts[-1].context


class EditStack:
    """Edits applied one after another to ``lm``; see the module docstring.

    The stack assumes it is the only writer of the weights it touches while it holds edits:
    a weight changed by anything else between a push and its pop is overwritten by the pop.
    """

    def __init__(self, lm: LoadedModel):
        self.lm = lm
        self._entries: list[StackEntry] = []

    def push(
        self, editor: Any, request: EditRequest | BatchEditRequest, on_step: StepFn | None = None
    ) -> Edit:
        """Compute ``request`` with ``editor`` on the model as it is now and apply it; returns
        the edit. A batch goes to ``compute_batch`` (an editor that cannot batch refuses it).
        A failed computation leaves the stack and the weights as they were."""
        with self.lm.lock:
            edit = compute_request(editor, self.lm, request, on_step)
            return self.push_edit(edit)

    def push_edit(self, edit: Edit) -> Edit:
        """Apply an edit computed elsewhere (on this model in its current state) on top of the stack."""
        with self.lm.lock:
            self._entries.append(StackEntry(edit, edit.apply(self.lm)))
        return edit

    def pop(self) -> Edit:
        """Revert the newest edit: the weights are bit for bit as before its push."""
        with self.lm.lock:
            if not self._entries:
                raise EditError("The edit stack is empty; there is nothing to pop.")
            entry = self._entries.pop()
            entry.applied.revert()
        return entry.edit

    def revert_all(self) -> list[Edit]:
        """Pop every edit, newest first; the weights are bit for bit as before the first push.
        Returns the popped edits in the order they were popped."""
        with self.lm.lock:
            return [self.pop() for _ in range(len(self._entries))]

    @property
    def edits(self) -> tuple[Edit, ...]:
        """The applied edits, oldest first."""
        return tuple(entry.edit for entry in self._entries)

    @property
    def fact_ids(self) -> tuple[str, ...]:
        """Every fact the stack edits, in push order (a batch contributes all of its facts)."""
        return tuple(fact_id for entry in self._entries for fact_id in entry.edit.fact_ids)

    @property
    def context(self) -> str:
        """The stacked in-context text to put before every prompt ("" without in-context edits)."""
        return stacked_context(self.edits)

    def evaluation_edit(self, source_language: str | None = None) -> Edit | None:
        """What ``evaluate(..., edit=…)`` needs to score the model with the whole stack applied:
        the stacked context (the weight changes are already in the model). ``None`` for an
        empty stack; ``source_language`` defaults to the newest edit's."""
        if not self._entries:
            return None
        newest = self._entries[-1].edit
        return Edit(
            method="stack",
            fact_id=newest.fact_id,
            source_language=source_language or newest.source_language,
            context=self.context,
            details={"fact_ids": list(self.fact_ids)},
        )

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Edit]:
        return iter(self.edits)
