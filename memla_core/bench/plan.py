"""What starting a run on a results file will do, said before anything computes: how many edits
(fact, method, source language) the settings cover, how many the file already holds, how many
remain. ``run_bench`` resumes the same way (``store.completed_keys``); front ends use this to say
"resuming: 4 of 6 edits are in the file" or "nothing left to do" instead of starting blind."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..data import MKEBDataset
from ..models import LoadedModel
from . import store
from .config import BenchConfig, resolve_method
from .runner import check_languages, drop_unknown_sources, expected_groups, select_facts


@dataclass(frozen=True)
class ResumePlan:
    """Edits a run on ``out`` covers (``total``) and how many of them the file already holds."""

    out: Path
    total: int
    done: int
    in_file: int  # every edit in the file, these settings' or not
    overwrite: bool = False

    @property
    def remaining(self) -> int:
        return self.total - self.done

    @property
    def nothing_left(self) -> bool:
        return self.total > 0 and self.remaining == 0

    def describe(self) -> str:
        """One sentence for people: what pressing Start does to this file."""
        name, total = self.out.name, _edits(self.total)
        if self.overwrite and self.in_file:
            return f"Starting over: the {_edits(self.in_file)} in {name} are discarded and all {total} computed again."
        if self.nothing_left:
            which = "the" if self.total == 1 else "all"
            return f"Nothing left to do: {name} already holds {which} {total} of these settings."
        if self.done:
            return (f"Resuming {name}: {self.done} of {total} {_be(self.done)} already in it; the remaining "
                    f"{self.remaining} {_be(self.remaining)} computed now.")
        if self.in_file:
            return f"Adding {total} to {name}, next to the {_edits(self.in_file)} already in it."
        return f"Computing {total} into {name}."


def _be(n: int) -> str:
    return "is" if n == 1 else "are"


def _edits(n: int) -> str:
    return f"{n} edit" if n == 1 else f"{n} edits"


def resume_plan(config: BenchConfig, lm: LoadedModel, dataset: MKEBDataset) -> ResumePlan:
    """The plan of ``run_bench(config)`` on ``lm`` and ``dataset`` (raises ``BenchConfigError``
    where the run would, e.g. for a language no selected fact has)."""
    facts = select_facts(dataset, config)
    check_languages(facts, config)
    methods = [resolve_method(name, lm, config) for name in config.methods]
    expected = expected_groups(facts, methods, config)
    if config.known_only:
        expected = drop_unknown_sources(expected, lm, facts)
    existing = store.read_all(config.out)
    in_file = len(existing.drop_duplicates(subset=list(store.KEY_COLUMNS))) if not existing.empty else 0
    done = 0 if config.overwrite else len(store.completed_keys(existing, expected))
    return ResumePlan(config.out, len(expected), done, in_file, config.overwrite)
