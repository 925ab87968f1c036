"""Does the unedited model know a fact? Per (fact, language): the true answer's rank and
probability on the edit prompt, and whether greedy decoding produces it.

Editing research edits what the model knows (ROME's "known facts" set): unlearning an answer the
model never gave makes ES and NS hard to read. Checks are cached per model on disk, because the
whole bundled set costs a few batched forward passes but the app asks on every page run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Literal, Sequence

import pandas as pd

from .data.schema import Fact
from .models import LoadedModel
from .paths import cache_dir
from .scoring import Completion, answer_logits, encode_completion

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]
"""``progress(checked, total)``."""

KNOWN, UNKNOWN, NO_ANSWER = "known", "unknown", "no true answer"


@dataclass(frozen=True)
class KnowledgeCheck:
    """The unedited model on one fact's edit prompt in one language.

    ``greedy_correct``: greedy decoding of as many tokens as the answer has yields exactly the
    answer's tokens. ``rank`` is the first answer token's rank in the next-token distribution
    (1 = the model's top choice); ``probability`` is P(answer | prompt), all tokens.
    ``top_token`` is what the model puts first instead. Facts without ``target_true`` have
    ``rank`` 0, NaN probability and ``greedy_correct`` False: there is nothing to know.
    """

    fact_id: str
    language: str
    prompt: str
    answer: str | None
    rank: int
    probability: float
    greedy_correct: bool
    top_token: str
    p_new: float = math.nan  # P(target_new | prompt): does the model already prefer the new answer?

    @property
    def status(self) -> str:
        if self.answer is None:
            return NO_ANSWER
        return KNOWN if self.greedy_correct else UNKNOWN

    @property
    def known(self) -> bool:
        return self.status == KNOWN


class KnowledgeCache:
    """Checks of one model in one JSON file, keyed by language, prompt and both answers."""

    def __init__(self, lm: LoadedModel, root: Path | None = None):
        self.path = (root or cache_dir() / "knowledge") / f"{lm.key}.json"
        self._entries: dict[str, dict] | None = None

    @staticmethod
    def key(language: str, prompt: str, answer: str | None, new: str) -> str:
        text = json.dumps([language, prompt, answer, new], ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def _load(self) -> dict[str, dict]:
        if self._entries is None:
            try:
                self._entries = json.loads(self.path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                self._entries = {}
            except (OSError, json.JSONDecodeError):
                log.warning("Ignoring unreadable knowledge cache %s; it will be rewritten.", self.path)
                self._entries = {}
        return self._entries

    def get(self, key: str) -> dict | None:
        return self._load().get(key)

    def put_many(self, entries: dict[str, dict]) -> None:
        if not entries:
            return
        # Re-read first: another process (CLI, second app session) may have added entries.
        self._entries = None
        merged = {**self._load(), **entries}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(merged, ensure_ascii=False), encoding="utf-8")
        tmp.replace(self.path)  # atomic: readers never see half a file
        self._entries = merged


def _request(fact: Fact, language: str) -> tuple[str, str | None, str]:
    edit = fact.in_language(language).edit
    return edit.filled(), edit.target_true, edit.target_new


def check_knowledge(
    lm: LoadedModel,
    facts: Iterable[Fact],
    languages: Sequence[str] | None = None,
    cache: KnowledgeCache | None | Literal[False] = None,
    batch_size: int = 32,
    progress: ProgressFn | None = None,
) -> list[KnowledgeCheck]:
    """One check per (fact, language), in order; ``languages=None``: every language of each fact.

    Teacher-forced argmax at every answer position equals greedy decoding's output exactly when
    greedy produces the answer, so one batched forward pass answers "does greedy produce it".
    ``cache=None`` uses the on-disk cache under ``MEMLA_CACHE``; ``False`` disables it.
    """
    store = KnowledgeCache(lm) if cache is None else (cache or None)
    pairs = [(fact, lang) for fact in facts for lang in (languages or fact.language_codes) if lang in fact.languages]
    found: dict[int, dict] = {}
    todo: list[tuple[int, str]] = []
    for i, (fact, lang) in enumerate(pairs):
        prompt, true, new = _request(fact, lang)
        key = KnowledgeCache.key(lang, prompt, true, new)
        hit = store.get(key) if store else None
        if hit is not None:
            found[i] = hit
        else:
            todo.append((i, key))
    # Saved a batch at a time: an interrupted check of a large dataset resumes where it stopped.
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        for (i, key), entry in zip(chunk, _compute(lm, [pairs[i] for i, _ in chunk], batch_size)):
            found[i] = entry
        if store:
            store.put_many({key: found[i] for i, key in chunk})
        if progress:
            progress(len(pairs) - len(todo) + start + len(chunk), len(pairs))
    if progress and not todo:
        progress(len(pairs), len(pairs))
    checks = []
    for i, (fact, lang) in enumerate(pairs):
        prompt, true, _ = _request(fact, lang)
        entry = found[i]
        checks.append(KnowledgeCheck(fact.example_id, lang, prompt, true, int(entry["rank"]), float(entry["probability"]),
                                     bool(entry["greedy_correct"]), entry["top_token"], float(entry["p_new"])))
    return checks


def _compute(lm: LoadedModel, pairs: Sequence[tuple[Fact, str]], batch_size: int) -> list[dict]:
    """Model queries for ``pairs``: the true answer's completion, and the new one's probability."""
    items: list[Completion] = []
    owners: list[tuple[int, str]] = []  # (pair index, "true" | "new")
    for i, (fact, lang) in enumerate(pairs):
        prompt, true, new = _request(fact, lang)
        if true:
            items.append(encode_completion(lm, prompt, true, lang))
            owners.append((i, "true"))
        items.append(encode_completion(lm, prompt, new, lang))
        owners.append((i, "new"))
    entries = [{"rank": 0, "probability": math.nan, "greedy_correct": False, "top_token": "", "p_new": math.nan}
               for _ in pairs]
    with lm.lock:
        for (i, which), item, logits in zip(owners, items, answer_logits(lm, items, batch_size)):
            logprobs = logits.log_softmax(-1)
            answer = list(item.answer_ids)
            chosen = logprobs[range(len(answer)), answer]
            entry = entries[i]
            if which == "new":
                entry["p_new"] = math.exp(float(chosen.sum()))
            else:
                first = logprobs[0]
                entry["rank"] = 1 + int((first > first[answer[0]]).sum())
                entry["probability"] = math.exp(float(chosen.sum()))
                entry["greedy_correct"] = logprobs.argmax(-1).tolist() == answer
                entry["top_token"] = lm.tokenizer.decode([int(first.argmax())], skip_special_tokens=True)
    return entries


def describe(check: KnowledgeCheck) -> str:
    """Short verdict for tables: ``known`` or what the model says instead."""
    if check.status == NO_ANSWER:
        return "— (no true answer)"
    if check.known:
        return f"✓ known (P {check.probability:.2f})"
    return f"✗ unknown: says “{check.top_token.strip() or check.top_token}” (true answer rank {check.rank:,}, P {check.probability:.3f})"


def knowledge_frame(checks: Sequence[KnowledgeCheck]) -> pd.DataFrame:
    """One row per check, with its status; the CSV and the CLI print this."""
    rows = [{**asdict(c), "status": c.status} for c in checks]
    return pd.DataFrame(rows, columns=[*KnowledgeCheck.__dataclass_fields__, "status"])


def known_pairs(checks: Iterable[KnowledgeCheck]) -> set[tuple[str, str]]:
    """``{(fact_id, language)}`` the model knows."""
    return {(c.fact_id, c.language) for c in checks if c.known}


def known_counts(checks: Sequence[KnowledgeCheck]) -> pd.DataFrame:
    """Per language: facts checked, known, share known, and how often the unedited model already
    puts the new answer above the true one."""
    frame = knowledge_frame(checks)
    frame = frame[frame["answer"].notna()]
    if frame.empty:
        return pd.DataFrame(columns=["language", "facts", "known", "known %", "prefers new %"])
    frame = frame.assign(prefers_new=frame["p_new"] > frame["probability"])
    grouped = frame.groupby("language", sort=False)
    out = pd.DataFrame({
        "facts": grouped.size(),
        "known": grouped["greedy_correct"].sum().astype(int),
        "prefers new": grouped["prefers_new"].sum().astype(int),
    })
    out["known %"] = 100 * out["known"] / out["facts"]
    out["prefers new %"] = 100 * out["prefers new"] / out["facts"]
    return out.reset_index()[["language", "facts", "known", "known %", "prefers new %"]]
