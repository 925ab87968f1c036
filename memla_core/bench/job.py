"""A benchmark run on a background thread (``jobs.BackgroundJob``), for front ends that must stay
responsive (the app).

The thread calls ``run_bench`` (or, for a sequential or batch run, ``run_series``) with a
``CancelToken``; the front end polls ``status()`` and
``results()``. Rows reach the results file group by group, so cancelling loses at most the group
in progress, and starting the same config again resumes it. One process may run several jobs,
but never two on one results file (their appends would interleave).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar, Literal

import pandas as pd

from ..data import MKEBDataset
from ..jobs import BackgroundJob, JobRegistry
from ..models import LoadedModel
from ..paths import cache_dir
from ..session import Cancelled, CancelToken
from . import store
from .config import BenchConfig, BenchConfigError
from .distributed import SINGLE_PROCESS
from .runner import BenchOutcome, run_bench
from .series import SeriesConfig, SeriesOutcome, run_series
from .store import Key

JobState = Literal["pending", "running", "done", "cancelled", "failed"]


def results_dir() -> Path:
    """Where the app keeps its runs' results files: ``$MEMLA_CACHE/bench``."""
    path = cache_dir() / "bench"
    path.mkdir(parents=True, exist_ok=True)
    return path


def results_files(folder: Path | None = None) -> list[Path]:
    """Results files in ``folder`` (default ``results_dir()``), newest first; summaries and part
    files that ``run_bench`` writes next to them are left out."""
    folder = folder or results_dir()
    found = [p for p in folder.glob("*.csv") if "." not in p.stem]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


@dataclass(frozen=True)
class JobStatus:
    """A snapshot of a job, safe to read from another thread."""

    state: JobState
    facts_done: int = 0
    facts_total: int = 0
    current: str = ""
    groups_computed: int = 0
    groups_failed: int = 0
    unit: str = "facts"  # what facts_done counts: facts, or a sequential/batch run's steps
    started: float | None = None
    finished: float | None = None

    @property
    def active(self) -> bool:
        return self.state in ("pending", "running")

    @property
    def fraction(self) -> float:
        return self.facts_done / self.facts_total if self.facts_total else 0.0

    @property
    def elapsed_s(self) -> float:
        if self.started is None:
            return 0.0
        return (self.finished or time.time()) - self.started


def find_job(out: Path) -> "BenchJob | None":
    """The job of this process that writes (or last wrote) ``out``, if any: how a front end finds a
    run again after losing its handle (a browser reload starts a new app session)."""
    return BenchJob.registry.find(out)


def running_jobs() -> list["BenchJob"]:
    """This process's jobs that are still computing, oldest first."""
    jobs = BenchJob.registry.jobs()
    return sorted((job for job in jobs if job.status().active), key=lambda job: job.status().started or 0.0)


class BenchJob(BackgroundJob[JobStatus]):
    """``run_bench(config)`` on a daemon thread, always as a single process."""

    registry: ClassVar[JobRegistry["BenchJob"]] = JobRegistry()

    def __init__(self, config: BenchConfig, lm: LoadedModel, dataset: MKEBDataset | None = None,
                 series: SeriesConfig | None = None):
        super().__init__(JobStatus("pending", unit="steps" if series else "facts"),
                         thread_name=f"memla-bench:{config.out.name}")
        self.config = config
        self.series = series
        self.lm = lm
        self.dataset = dataset
        self.token = CancelToken()
        self.outcome: BenchOutcome | SeriesOutcome | None = None
        self.what = f"Benchmark run {config.out}"

    @property
    def path(self) -> Path:
        return self.config.out.resolve()

    def busy(self) -> Exception:
        return BenchConfigError(
            f"A benchmark is already writing {self.config.out}; wait for it, stop it, or choose another results file."
        )

    def cancel(self) -> None:
        """Ask the run to stop; it does within one optimisation step (see ``status``)."""
        self.token.cancel()

    def results(self) -> pd.DataFrame:
        """Every row in the results file so far (earlier runs' included)."""
        return store.read_all(self.config.out)

    # ------------------------------------------------------------------ thread side

    def _progress(self, done: int, total: int, label: str) -> None:
        self._update(facts_done=done, facts_total=total, current=label)

    def _group_done(self, _key: Key, rows: list[dict]) -> None:
        failed = bool(rows and rows[0].get("error"))
        with self._lock:
            self._status = replace(
                self._status,
                groups_computed=self._status.groups_computed + 1,
                groups_failed=self._status.groups_failed + failed,
            )

    def _step_done(self, _key: tuple[str, str, int], rows: list[dict]) -> None:
        self._group_done(_key, [row for row in rows if row.get("role") != "model"][:1])

    def work(self) -> JobState:
        try:
            if self.series is not None:
                self.outcome = run_series(
                    self.config, self.series, lm=self.lm, dataset=self.dataset, progress=self._progress,
                    after_step=self._step_done, cancel=self.token,
                )
            else:
                self.outcome = run_bench(
                    self.config, lm=self.lm, dataset=self.dataset, progress=self._progress,
                    after_group=self._group_done, context=SINGLE_PROCESS, cancel=self.token,
                )
        except Cancelled as err:
            self.error = err
            return "cancelled"
        return "done"
