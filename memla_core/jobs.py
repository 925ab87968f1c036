"""Work on a background thread, for front ends that must stay responsive: what the benchmark job
(``bench.job.BenchJob``) and MEND training (``editing.mend_job.MendTrainingJob``) share.

A job runs its ``work`` on a daemon thread and keeps a frozen status snapshot (a dataclass with
``state``, ``started``, ``finished`` and an ``active`` property) that other threads read with
``status()``. Each kind of job has a ``JobRegistry``: one running job per output path per process,
which a front end finds again after losing its handle (a browser reload starts a new session).
"""

from __future__ import annotations

import abc
import logging
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar


class Status(Protocol):
    state: str
    started: float | None

    @property
    def active(self) -> bool: ...


S = TypeVar("S", bound=Status)
J = TypeVar("J", bound="BackgroundJob")


class JobRegistry(Generic[J]):
    """This process's jobs of one kind by the path each writes (the latest job per path)."""

    def __init__(self) -> None:
        self._jobs: dict[Path, J] = {}
        self._lock = threading.Lock()

    def find(self, path: Path) -> J | None:
        with self._lock:
            return self._jobs.get(Path(path).resolve())

    def jobs(self) -> list[J]:
        with self._lock:
            return list(self._jobs.values())

    def claim(self, job: J) -> None:
        """Register ``job`` under its path; a job still running there is an error (``job.busy``)."""
        with self._lock:
            other = self._jobs.get(job.path)
            if other is not None and other.status().active:
                raise job.busy()
            self._jobs[job.path] = job


class BackgroundJob(abc.ABC, Generic[S]):
    """``work`` on a daemon thread. A subclass sets ``registry``, ``path`` (resolved) and ``what``
    (for the log), and defines ``work`` (the final state) and ``busy`` (the error when another job
    writes the same path)."""

    registry: ClassVar[JobRegistry]
    path: Path
    what: str

    def __init__(self, status: S, thread_name: str):
        self.error: BaseException | None = None
        self._status = status
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=thread_name, daemon=True)

    @abc.abstractmethod
    def work(self) -> str:
        """The job itself, on the thread; returns its final state (an exception: "failed")."""

    @abc.abstractmethod
    def busy(self) -> Exception:
        """The error ``start`` raises while another job of this kind writes ``path``."""

    def start(self: J) -> J:
        self.registry.claim(self)
        self._update(state="running", started=time.time())
        self._thread.start()
        return self

    def wait(self, timeout: float | None = None) -> S:
        self._thread.join(timeout)
        return self.status()

    def status(self) -> S:
        with self._lock:
            return self._status

    # ------------------------------------------------------------------ thread side

    def _update(self, **changes: Any) -> None:
        with self._lock:
            self._status = replace(self._status, **changes)

    def _run(self) -> None:
        try:
            state = self.work()
        except Exception as err:  # noqa: BLE001 - kept for the front end to show
            logging.getLogger(type(self).__module__).exception("%s failed", self.what)
            self.error, state = err, "failed"
        self._update(state=state, finished=time.time())
