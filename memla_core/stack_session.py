"""A session's edit stack on the shared model: several edits in a row, applied only while it computes.

``editing.EditStack`` pushes edits into a model and keeps them there. The app's model is shared
by every browser session, so a session cannot leave its edits in the weights: it keeps them as
computed ``Edit`` objects (a ``SessionStack``, oldest first) and ``session.edited(lm, edit,
under=stack.edits)`` writes them in order, with the session's newest edit on top, for one
computation under the model's lock, then copies every touched weight back (exact, as
``EditStack.revert_all``). Each edit is computed on the model with the earlier ones applied
(``session.compute_edit(…, under=stack.edits)``), exactly as ``EditStack.push`` computes it.

    stack = SessionStack()
    first = compute_edit(lm, EditRequest(fact_a, "en"), "ft", config)
    stack = stack.push(fact_a, first)
    second = compute_edit(lm, EditRequest(fact_b, "en"), "ft", config, under=stack.edits)
    stack = stack.push(fact_b, second)
    table = stack.retention(lm, ["en", "zh"])   # ES of every stacked fact, whole stack applied
    stack = stack.pop()                         # forget the newest edit (the weights were never kept)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import pandas as pd

from .ability import AbilityConfig, AbilityReport, DriftReference, ProbeSet, measure_ability
from .data.schema import Fact
from .editing import Edit, EditError
from .models import LoadedModel
from .session import CancelToken, as_scored, edited, evaluate_fact


@dataclass(frozen=True, eq=False)
class StackedEdit:
    """One edit of the stack and the fact it edits (kept to re-score it later)."""

    fact: Fact
    edit: Edit

    @property
    def label(self) -> str:
        return f"{self.fact.example_id} ({self.edit.method}, {self.edit.source_language})"


@dataclass(frozen=True, eq=False)
class SessionStack:
    """A session's stacked edits, oldest first; ``push`` and ``pop`` return a new stack."""

    entries: tuple[StackedEdit, ...] = ()

    def push(self, fact: Fact, edit: Edit) -> "SessionStack":
        """The stack with ``edit`` on top; compute it with ``under=self.edits`` first."""
        return SessionStack((*self.entries, StackedEdit(fact, edit)))

    def pop(self) -> "SessionStack":
        """The stack without its newest edit."""
        if not self.entries:
            raise EditError("The edit stack is empty; there is nothing to pop.")
        return SessionStack(self.entries[:-1])

    @property
    def edits(self) -> tuple[Edit, ...]:
        """The edits to apply, in order (``under=`` of the ``session`` functions)."""
        return tuple(entry.edit for entry in self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[StackedEdit]:
        return iter(self.entries)

    def retention(
        self,
        lm: LoadedModel,
        languages: Sequence[str],
        progress: Callable[[int, int, str], None] | None = None,
        cancel: CancelToken | None = None,
    ) -> pd.DataFrame:
        """Which stacked edits still hold: ES and PS of every stacked fact in each of ``languages``
        it has, scored on the model with the whole stack applied (and its stacked contexts).

        One row per (stacked edit, target language): ``position`` (1 = oldest), ``fact_id``,
        ``method``, ``source_lang``, ``target_lang``, ``ES``, ``PS``, ``answer``, ``p_new``.
        """
        rows = []
        for position, entry in enumerate(self.entries, start=1):
            if cancel is not None:
                cancel.check()
            if progress:
                progress(position - 1, len(self.entries), entry.fact.example_id)
            mine = [lang for lang in languages if lang in entry.fact.languages]
            if not mine:
                continue
            report = evaluate_fact(lm, entry.fact, mine, None, entry.edit.source_language, cancel=cancel,
                                   under=self.edits)
            for row in report.summary.to_dict("records"):
                rows.append({"position": position, "fact_id": entry.fact.example_id, "method": entry.edit.method,
                             "source_lang": entry.edit.source_language, "target_lang": row["target_lang"],
                             "ES": row["ES"], "PS": row["PS"], "answer": row["answer"], "p_new": row["p_new"]})
        if progress:
            progress(len(self.entries), len(self.entries), "done")
        return pd.DataFrame(rows, columns=["position", "fact_id", "method", "source_lang", "target_lang",
                                           "ES", "PS", "answer", "p_new"])


def retention_grid(rows: pd.DataFrame, metric: str = "ES") -> pd.DataFrame:
    """``SessionStack.retention`` as one row per stacked edit, one column per target language
    (``metric`` in %; NaN where the fact has no such language), then the row's mean."""
    if rows.empty:
        return pd.DataFrame(columns=["#", "fact", "method", "source"])
    languages = list(dict.fromkeys(rows["target_lang"]))
    grid = rows.set_index(["position", "fact_id", "method", "source_lang", "target_lang"])[metric].unstack("target_lang")
    grid = grid.reindex(columns=languages).reset_index()
    grid.columns.name = None
    grid = grid.rename(columns={"position": "#", "fact_id": "fact", "source_lang": "source"})
    values = grid[languages]
    grid[f"mean {metric}"] = values.mean(axis=1, skipna=True)
    return grid


def measure_session_ability(
    lm: LoadedModel,
    probe: ProbeSet,
    reference: DriftReference,
    edit: Edit | None,
    under: Sequence[Edit] = (),
    config: AbilityConfig = AbilityConfig(),
    label: str | None = None,
) -> AbilityReport:
    """The general-ability probe and drift (from the unedited ``reference``) on the session's
    model: ``edit`` on top of its stack ``under``, applied for this measurement only."""
    scored = as_scored(edit, under)
    with edited(lm, edit, under):
        return measure_ability(lm, probe, reference, edit=scored, config=config,
                               label=label or (f"{len(under)} stacked edit(s)" if edit is None else None))


def held_share(rows: pd.DataFrame) -> float:
    """Share of (stacked edit, target language) pairs whose ES is 100 (NaN without rows)."""
    values = [v for v in rows["ES"] if not math.isnan(v)] if not rows.empty else []
    return sum(v >= 100 for v in values) / len(values) if values else math.nan
