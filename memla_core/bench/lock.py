"""One writer per results file: ``<out>.lock`` holds the writing run's PID, host and start time.

Two ``memla bench`` runs (or a run and the app) on one ``--out`` would both compute everything
and interleave their appends. The lock belongs to a *run*, not a process: under ``accelerate
launch`` every worker is a child of the launcher, so the owner is the launcher's PID and all
workers of one run share the lock while a second launch is refused. A lock whose owner is dead
(on this host) is stale, from a crash, and is taken over.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


class ResultsLockedError(RuntimeError):
    """Another live run writes this results file."""


@dataclass(frozen=True)
class LockInfo:
    pid: int
    host: str
    started: str  # ISO time, UTC

    def describe(self) -> str:
        where = "" if self.host == socket.gethostname() else f" on {self.host}"
        return f"PID {self.pid}{where}, started {self.started}"


def lock_path(out: Path) -> Path:
    return Path(out).with_name(Path(out).name + ".lock")


def run_owner(distributed: bool) -> int:
    """The PID that identifies this run: the launcher's under ``accelerate launch``, else ours."""
    return os.getppid() if distributed else os.getpid()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def read_lock(out: Path) -> LockInfo | None:
    path = lock_path(out)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return LockInfo(int(data["pid"]), str(data["host"]), str(data["started"]))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):  # half-written or foreign: treat as stale
        return LockInfo(-1, socket.gethostname(), "unknown")


def holder(out: Path) -> LockInfo | None:
    """The live run that holds the lock of ``out``; None without a lock or with a stale one."""
    held = read_lock(out)
    return None if held is None or _stale(held) else held


def _stale(info: LockInfo) -> bool:
    return info.host == socket.gethostname() and (info.pid <= 0 or not pid_alive(info.pid))


def acquire(out: Path, owner: int | None = None) -> LockInfo:
    """Take the lock of ``out`` for ``owner`` (default: this process); joining a lock the same
    owner already holds is allowed (the other workers of one ``accelerate launch``)."""
    owner = os.getpid() if owner is None else owner
    path = lock_path(out)
    mine = LockInfo(owner, socket.gethostname(), dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"))
    payload = json.dumps({"pid": mine.pid, "host": mine.host, "started": mine.started})
    for _attempt in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            held = read_lock(out)
            if held is None:
                continue  # released meanwhile
            if held.pid == owner and held.host == mine.host:
                return held
            if not _stale(held):
                raise ResultsLockedError(
                    f"{out} is being written by another run ({held.describe()}). Wait for it to finish, stop it, "
                    f"or choose another results file. If that run is gone, delete {path}."
                ) from None
            log.warning("Taking over the stale lock of %s (%s is not running).", out, held.describe())
            tmp = path.with_name(f"{path.name}.{owner}.tmp")
            tmp.write_text(payload, encoding="utf-8")
            os.replace(tmp, path)  # atomic: one of several takers wins, the others see its owner
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(payload)
        return mine
    held = read_lock(out)
    if held is not None and held.pid == owner:
        return held
    raise ResultsLockedError(f"Could not take the lock {path}; another run is starting on {out}.")


def release(out: Path, owner: int | None = None) -> None:
    """Remove the lock if ``owner`` holds it (a lock taken over by another run is left alone)."""
    owner = os.getpid() if owner is None else owner
    held = read_lock(out)
    if held is not None and held.pid == owner and held.host == socket.gethostname():
        lock_path(out).unlink(missing_ok=True)
