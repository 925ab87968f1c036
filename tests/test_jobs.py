"""The background-job base that the benchmark job and MEND training share (memla_core/jobs.py),
with a job that only waits for an event: states, the error of a failed run, one job per path."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from memla_core.jobs import BackgroundJob, JobRegistry


@dataclass(frozen=True)
class WaitStatus:
    state: str
    started: float | None = None
    finished: float | None = None

    @property
    def active(self) -> bool:
        return self.state == "running"


class WaitJob(BackgroundJob[WaitStatus]):
    registry: ClassVar[JobRegistry["WaitJob"]] = JobRegistry()

    def __init__(self, path: Path, fail: bool = False):
        super().__init__(WaitStatus("pending"), thread_name="memla-test-wait")
        self.path, self.fail, self.what = path.resolve(), fail, f"Waiting on {path.name}"
        self.release = threading.Event()

    def busy(self) -> Exception:
        return ValueError(f"{self.path.name} is taken")

    def work(self) -> str:
        self.release.wait(10)
        if self.fail:
            raise RuntimeError("no luck")
        return "done"


def test_a_job_runs_on_its_thread_and_reports_its_states(tmp_path):
    job = WaitJob(tmp_path / "a")
    assert job.status().state == "pending"
    assert job.start() is job and job.status().active and job.status().started is not None
    job.release.set()
    status = job.wait(10)
    assert status.state == "done" and status.finished >= status.started and job.error is None
    assert WaitJob.registry.find(tmp_path / "a") is job


def test_a_failing_job_keeps_its_error_and_logs_it(tmp_path, caplog):
    job = WaitJob(tmp_path / "b", fail=True).start()
    job.release.set()
    assert job.wait(10).state == "failed" and str(job.error) == "no luck"
    assert "Waiting on b failed" in caplog.text and caplog.records[-1].name == __name__


def test_one_running_job_per_path(tmp_path):
    first = WaitJob(tmp_path / "c").start()
    with pytest.raises(ValueError, match="c is taken"):
        WaitJob(tmp_path / "c").start()
    first.release.set()
    first.wait(10)
    second = WaitJob(tmp_path / "c").start()  # a finished job leaves the path free
    second.release.set()
    assert second.wait(10).state == "done" and WaitJob.registry.find(tmp_path / "c") is second
