"""The dev/test split: tune on one half of the facts, report on the other.

Deterministic and stratified by relation, so that neither half is all capitals: within each
relation the facts are ordered by a hash of their id (stable whatever the file order), and the
first half go to ``dev``. Relations with an odd number of facts give their extra fact to ``dev``
and ``test`` in turn (relations taken in name order), which keeps the halves the same size.
Facts without a relation form one stratum of their own.
"""

from __future__ import annotations

import hashlib
from typing import Iterable, Literal, Sequence

from .schema import Fact

Split = Literal["dev", "test"]
SPLITS: tuple[str, ...] = ("dev", "test")
SALT = "memla-split-v1"  # changing it would silently change every published dev/test number


def _rank(fact_id: str) -> str:
    return hashlib.sha256(f"{SALT}:{fact_id}".encode()).hexdigest()


def split_assignment(facts: Iterable[Fact]) -> dict[str, Split]:
    """fact id -> ``dev`` or ``test``."""
    strata: dict[str, list[str]] = {}
    for fact in facts:
        strata.setdefault(fact.relation or "", []).append(fact.example_id)
    assignment: dict[str, Split] = {}
    odd_seen = 0
    for relation in sorted(strata):
        ids = sorted(strata[relation], key=_rank)
        n_dev = len(ids) // 2
        if len(ids) % 2:
            n_dev += odd_seen % 2 == 0  # the 1st, 3rd, … odd stratum gives its extra fact to dev
            odd_seen += 1
        for position, fact_id in enumerate(ids):
            assignment[fact_id] = "dev" if position < n_dev else "test"
    return assignment


def select_split(facts: Sequence[Fact], split: str | None, per_relation: int | None = None) -> list[Fact]:
    """The facts of one split in their original order; ``None`` or ``all`` keeps every fact.

    ``per_relation`` keeps only the first k facts of each relation (in the split's hash order):
    a smaller sample that still covers every relation, for sweeps on a tight budget.
    """
    if split in (None, "", "all"):
        chosen = list(facts)
    elif split not in SPLITS:
        raise ValueError(f"Unknown split '{split}'; choose dev, test or all.")
    else:
        assignment = split_assignment(facts)
        chosen = [fact for fact in facts if assignment[fact.example_id] == split]
    if per_relation is None:
        return chosen
    if per_relation < 1:
        raise ValueError("per_relation must be at least 1 (or None for every fact of the split).")
    keep: set[str] = set()
    strata: dict[str, list[Fact]] = {}
    for fact in chosen:
        strata.setdefault(fact.relation or "", []).append(fact)
    for members in strata.values():
        keep.update(f.example_id for f in sorted(members, key=lambda f: _rank(f.example_id))[:per_relation])
    return [fact for fact in chosen if fact.example_id in keep]
