"""MEND's hypernetwork for front ends: whether one is trained for a model (and where), and
training it on a background thread that reports progress, stops on request and resumes.

``mend_checkpoint`` reads only the checkpoints' metadata (the tensors are memory-mapped, never
read), so a page may call it on every run. ``MendTrainingJob`` runs ``train_mend`` on a daemon
thread; stopping it saves the resumable training state, and starting a job with the same
settings later continues from there (``train_mend``'s own resume). One job per checkpoint folder
per process: a front end finds a running one again with ``find_training`` (a reload, or another
session of an app that shares one model between sessions).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar, Literal, Sequence

import torch

from ..data.schema import Fact
from ..jobs import BackgroundJob, JobRegistry
from ..models import LoadedModel
from .hparams import resolve
from .mend import HYPERNETWORK_FILE, TRAINING_FILE, MendConfig, checkpoint_dir
from .mend_training import MendTrainConfig, MendTrainingResult, train_mend

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- what is on disk


@dataclass(frozen=True)
class MendCheckpoint:
    """What ``folder`` holds for one model and MEND config."""

    folder: Path
    trained: bool
    """A hypernetwork for exactly these weights exists: MEND can edit."""
    trained_for: dict | None = None
    """The weights (``MendConfig.architecture()``) of a hypernetwork trained for *other* weights."""
    languages: tuple[str, ...] = ()
    """Training languages of the hypernetwork, else of the unfinished run."""
    steps_done: int = 0
    """Steps in the training state (a finished run's too); 0: no training has started."""
    total_steps: int = 0
    """Steps the training state's run was asked for."""

    @property
    def unfinished(self) -> bool:
        """A training run stopped before its last step; training again resumes it."""
        return not self.trained and 0 < self.steps_done < self.total_steps


@functools.lru_cache(maxsize=16)
def _metadata(path: str, _mtime_ns: int) -> dict:
    # Keyed by the file's version. mmap: the hypernetwork and optimiser tensors (hundreds of MB for
    # the default model) stay on disk; only the small fields below are kept.
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return {k: state.get(k) for k in ("config", "languages", "step", "total_steps", "steps")}


def _read(path: Path) -> dict | None:
    try:
        return _metadata(str(path), path.stat().st_mtime_ns)
    except FileNotFoundError:
        return None
    except Exception as err:  # noqa: BLE001 - a damaged file reads as absent; training rewrites it
        log.warning("Cannot read MEND checkpoint %s: %s", path, err)
        return None


def mend_checkpoint(lm: LoadedModel, config: MendConfig | None = None) -> MendCheckpoint:
    """Whether ``lm`` has a MEND hypernetwork for the weights ``config`` edits, and where; the
    unfinished training run's progress if there is one. Creates nothing."""
    cfg = resolve(config or MendConfig(), "mend", lm)
    folder = checkpoint_dir(lm, cfg)
    final, partial = _read(folder / HYPERNETWORK_FILE), _read(folder / TRAINING_FILE)
    trained = final is not None and final.get("config") == cfg.architecture()
    source = final if trained else (partial or final or {})
    return MendCheckpoint(
        folder=folder,
        trained=trained,
        trained_for=final.get("config") if final is not None and not trained else None,
        languages=tuple(source.get("languages") or ()),
        steps_done=int((partial or {}).get("step") or (final or {}).get("steps") or 0),
        total_steps=int((partial or {}).get("total_steps") or (final or {}).get("steps") or 0),
    )


def bundled_training_data() -> tuple[list[Fact], list[str]]:
    """(the bundled facts' dev split, its source description): ``memla train-mend``'s default
    data, described in the same words, so the app and the command resume each other's runs."""
    from ..data import load_bundled
    from ..data.splits import select_split

    dev = select_split(load_bundled().facts, "dev")
    return dev, [f"bundled:dev ({len(dev)} facts)"]


def data_languages(facts: Sequence[Fact]) -> list[str]:
    """Every language of ``facts``, in the order ``train_mend`` lists them when given none."""
    return list(dict.fromkeys(code for fact in facts for code in fact.language_codes))


# --------------------------------------------------------------------------- training job


TrainingState = Literal["running", "done", "stopped", "failed"]


@dataclass(frozen=True)
class TrainingStatus:
    """A snapshot of a training job, safe to read from another thread."""

    state: TrainingState
    step: int = 0
    total: int = 0
    record: dict | None = None
    """The last step's record: loss, edit, locality, p_new, language."""
    started: float | None = None
    first_step: tuple[float, int] | None = None
    """(time, step) of this run's first step; before it, the locality texts are generated."""
    last_step_time: float | None = None
    finished: float | None = None

    @property
    def active(self) -> bool:
        return self.state == "running"

    @property
    def fraction(self) -> float:
        return min(self.step / self.total, 1.0) if self.total else 0.0

    @property
    def loss(self) -> float | None:
        return None if self.record is None else float(self.record["loss"])

    @property
    def eta_s(self) -> float | None:
        """Seconds left at this run's pace so far; None before its first step."""
        if self.first_step is None or self.last_step_time is None or self.started is None:
            return None
        first_time, first = self.first_step
        if self.step > first:
            per_step = (self.last_step_time - first_time) / (self.step - first)
        else:  # one step so far: its time includes the one-time locality texts, an overestimate
            per_step = first_time - self.started
        return max(self.total - self.step, 0) * per_step


class _StopRequested(KeyboardInterrupt):
    """Raised from the progress callback: ``train_mend`` saves its resumable state on a
    KeyboardInterrupt and re-raises it, which is exactly what a Stop button needs."""


def find_training(folder: Path) -> "MendTrainingJob | None":
    """This process's training job (running or finished) that writes ``folder``, if any."""
    return MendTrainingJob.registry.find(folder)


class MendTrainingJob(BackgroundJob[TrainingStatus]):
    """``train_mend`` on a daemon thread (``jobs.BackgroundJob``). ``cancel`` stops it after the
    step in progress, with the training state saved: a job with the same settings resumes from there."""

    registry: ClassVar[JobRegistry["MendTrainingJob"]] = JobRegistry()

    def __init__(
        self,
        lm: LoadedModel,
        facts: Sequence[Fact],
        config: MendTrainConfig,
        languages: Sequence[str] | None = None,
        sources: Sequence[str] = (),
        restart: bool = False,
    ):
        super().__init__(TrainingStatus("running", total=config.steps), thread_name=f"memla-mend:{lm.key}")
        self.lm = lm
        self.facts = list(facts)
        self.config = config
        self.languages = list(languages) if languages else None
        self.sources = list(sources)
        self.restart = restart
        self.folder = checkpoint_dir(lm, resolve(config.mend, "mend", lm)).resolve()
        self.result: MendTrainingResult | None = None
        self.what = f"MEND training of {lm.key}"
        self._stop = threading.Event()

    @property
    def path(self) -> Path:
        return self.folder

    def busy(self) -> Exception:
        return ValueError(f"MEND is already being trained into {self.folder}; wait for it or stop it.")

    def cancel(self) -> None:
        """Stop after the step in progress (the locality texts, generated first, are not interrupted)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # ------------------------------------------------------------------ thread side

    def _progress(self, step: int, total: int, record: dict) -> None:
        now = time.time()
        with self._lock:
            first = self._status.first_step or (now, step)
            self._status = replace(self._status, step=step, total=total, record=dict(record), first_step=first,
                                   last_step_time=now)
        if self._stop.is_set() and step < total:  # at the last step the final save is better than a stop
            raise _StopRequested

    def work(self) -> TrainingState:
        try:
            self.result = train_mend(
                self.lm, self.facts, self.config, languages=self.languages, sources=self.sources,
                progress=self._progress, restart=self.restart,
            )
        except _StopRequested:
            return "stopped"
        return "done" if self.result.finished else "stopped"
