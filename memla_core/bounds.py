"""Limits on what users hand in, checked before any computation, each with a message that says
which limit, where the input crosses it and how to change it.

Without them a 5,000-word prompt runs for minutes and gigabytes with no word, and a 300-character
results-file name reaches the filesystem as a raw ``OSError``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

from .data.schema import Fact

MAX_PROMPT_TOKENS_ENV = "MEMLA_MAX_PROMPT_TOKENS"
DEFAULT_MAX_PROMPT_TOKENS = 256
"""MKEB prompts are 5-40 tokens; 256 leaves room for long imported questions while keeping a
CPU edit of one fact to about a minute (attention and IG cost grow with length)."""

MAX_RESULTS_NAME = 100
"""Characters in a results-file name (without .csv): part files and summaries add suffixes, and
filesystems stop at 255 bytes."""
RESULTS_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

MAX_DATASET_MB_ENV = "MEMLA_MAX_DATASET_MB"
DEFAULT_MAX_DATASET_MB = 512
"""An MKEB file is parsed in memory (records nest per-language mappings); 512 MB of JSON is
several times MLaKE and MzsRE together."""


class InputTooLargeError(ValueError):
    """An input beyond a stated limit."""


def max_prompt_tokens(override: int | None = None) -> int:
    if override is not None:
        return override
    return _env_int(MAX_PROMPT_TOKENS_ENV, DEFAULT_MAX_PROMPT_TOKENS)


def check_prompt_lengths(tokenizer, fact: Fact, languages: Sequence[str], limit: int | None = None) -> None:
    """Refuse ``fact`` when any prompt it would run (edit, paraphrase, neighborhood, multi-hop) in
    ``languages`` has more than ``limit`` tokens (default ``$MEMLA_MAX_PROMPT_TOKENS`` or 256)."""
    limit = max_prompt_tokens(limit)
    for lang in dict.fromkeys(languages):
        if lang not in fact.languages:
            continue
        block = fact.in_language(lang)
        texts = [("edit prompt", block.edit.filled())]
        texts += [("paraphrase", t) for t in block.paraphrase_prompts]
        texts += [("neighborhood prompt", t) for t in block.neighborhood_prompts]
        texts += [("multi-hop question", t) for t in block.multi_hop_questions]
        for what, text in texts:
            n = len(tokenizer(text)["input_ids"])
            if n > limit:
                raise InputTooLargeError(
                    f"Fact {fact.example_id}, {what} in '{lang}' has {n} tokens; the limit is {limit}. "
                    f"Shorten it, or raise the limit with --max-prompt-tokens or {MAX_PROMPT_TOKENS_ENV}."
                )


def check_text_length(tokenizer, text: str, limit: int | None = None) -> None:
    """The same limit for free text typed into the app."""
    limit = max_prompt_tokens(limit)
    n = len(tokenizer(text)["input_ids"])
    if n > limit:
        raise InputTooLargeError(f"The prompt has {n} tokens; the limit is {limit} (set {MAX_PROMPT_TOKENS_ENV} to change it).")


def check_results_name(name: str) -> str:
    """A results-file name as typed (without folder or .csv): returned when usable, else refused."""
    stem = name[:-4] if name.lower().endswith(".csv") else name
    if not stem:
        raise ValueError("Give the results file a name.")
    if len(stem) > MAX_RESULTS_NAME:
        raise ValueError(f"The results-file name has {len(stem)} characters; use at most {MAX_RESULTS_NAME}.")
    if not RESULTS_NAME_PATTERN.match(stem) or "." in stem:
        raise ValueError(
            f"The results-file name '{stem[:40]}' may hold only letters, digits, '-' and '_' "
            "(and must start with a letter or digit)."
        )
    return stem


def check_results_path(path: Path) -> None:
    """A results CSV given on the command line: a name the filesystem and the part files accept."""
    if path.suffix.lower() != ".csv":
        raise ValueError(f"--out {path}: the results file must end in .csv.")
    if len(path.stem) > MAX_RESULTS_NAME:
        raise ValueError(f"--out: the file name has {len(path.stem)} characters; use at most {MAX_RESULTS_NAME}.")


def max_dataset_bytes() -> int:
    return _env_int(MAX_DATASET_MB_ENV, DEFAULT_MAX_DATASET_MB) * 1024 * 1024


def check_dataset_size(size: int, name: str) -> None:
    """Before a dataset file is read into memory."""
    limit = max_dataset_bytes()
    if size > limit:
        raise InputTooLargeError(
            f"{name} is {size / 2**20:.0f} MB; datasets are read whole and the limit is {limit / 2**20:.0f} MB. "
            f"Split the file, or raise {MAX_DATASET_MB_ENV}."
        )


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: expected a whole number.") from None
    if value <= 0:
        raise ValueError(f"{name}={raw!r}: expected a positive number.")
    return value
