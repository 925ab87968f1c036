"""Writing result files safely: the path is checked before any computation, and a write that
fails anyway keeps the result in a temporary file instead of losing minutes of work."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, Sequence


class OutputPathError(ValueError):
    """An output path that cannot be written; raised before any computation."""


def check_output_path(path: Path, suffixes: Sequence[str] | None = None) -> None:
    """Fail now, not after the computation: folder exists and is writable, name is acceptable."""
    path = Path(path)
    if suffixes and path.suffix.lower() not in suffixes:
        raise OutputPathError(f"--out {path}: use a file ending in {' or '.join(suffixes)}.")
    if path.is_dir():
        raise OutputPathError(f"--out {path} is a folder; give a file name inside it.")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.exists():
        raise OutputPathError(f"--out {path}: the folder {folder} does not exist; create it first.")
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise OutputPathError(f"--out {path}: the folder {folder} is not writable.")
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputPathError(f"--out {path} exists and is not writable.")
    if len(path.name.encode("utf-8")) > 255:
        raise OutputPathError(f"--out: the file name has {len(path.name.encode('utf-8'))} bytes; filesystems allow 255.")


class KeptResultError(OSError):
    """The write failed; ``kept`` is where the result was saved instead."""

    def __init__(self, path: Path, kept: Path, cause: OSError):
        self.path, self.kept = path, kept
        super().__init__(f"Could not write {path} ({cause.strerror or cause}); the result is kept in {kept}.")


def write_or_keep(path: Path, write: Callable[[Path], None]) -> None:
    """``write(path)``; when that fails, ``write`` a temporary file of the same suffix and raise
    ``KeptResultError`` naming it (the computation is not lost)."""
    path = Path(path)
    try:
        write(path)
        return
    except OSError as err:
        cause = err
    handle, name = tempfile.mkstemp(prefix="memla-result-", suffix=path.suffix)
    os.close(handle)
    kept = Path(name)
    write(kept)
    raise KeptResultError(path, kept, cause)
