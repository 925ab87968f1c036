"""tqdm bars fed by the library's progress callbacks."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

from tqdm.auto import tqdm


@contextmanager
def step_bar(description: str, unit: str = "step") -> Iterator[Callable[[int, int, str], None]]:
    bar = tqdm(desc=description, unit=unit, leave=False)

    def progress(done: int, total: int, what: str) -> None:
        bar.total = total
        bar.n = done
        bar.set_postfix_str(what[:50])
        bar.refresh()

    try:
        yield progress
    finally:
        bar.close()
