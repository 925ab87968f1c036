"""The general-ability probe as data: two-choice items, prompt templates, ordinary sentences.

Two tasks, each item in every language it has (assets/ability/, assets/DATASHEET.md):

- ``physical``: a goal and two solutions, one of which works (in the spirit of PIQA);
- ``nli``: a premise and a hypothesis, entailed or not (in the spirit of ANLI/XNLI, two-way).

Every item becomes a :class:`ProbeItem`: a prompt (the language's template filled in) and the two
texts that may continue it. The files are validated here with one ``item/language/field: problem``
line per fault, the style of ``data.loader``.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..data.loader import DatasetError
from ..data.schema import MKEB_LANGUAGES
from ..paths import ASSETS_DIR

ABILITY_DIR = ASSETS_DIR / "ability"
PHYSICAL_PATH = ABILITY_DIR / "physical.json"
NLI_PATH = ABILITY_DIR / "nli.json"
SENTENCES_PATH = ABILITY_DIR / "sentences.json"

TASKS: tuple[str, ...] = ("physical", "nli")
NLI_LABELS: tuple[str, ...] = ("entailment", "not_entailment")
"""NLI labels in choice order: the template's first choice ("Yes") means entailed."""


@dataclass(frozen=True)
class ProbeItem:
    """One two-choice question in one language; ``answer`` is the index of the right choice."""

    task: str
    item_id: str
    language: str
    prompt: str
    choices: tuple[str, str]
    answer: int


@dataclass(frozen=True)
class ProbeSet:
    """Probe items of one or more tasks and languages (bundled or imported)."""

    items: tuple[ProbeItem, ...]
    name: str = "probe"
    notes: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.items)

    @property
    def languages(self) -> tuple[str, ...]:
        seen = {item.language for item in self.items}
        return tuple([c for c in MKEB_LANGUAGES if c in seen] + sorted(seen - set(MKEB_LANGUAGES)))

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(item.task for item in self.items))

    def subset(self, languages: Iterable[str] | None = None, items_per_task: int | None = None) -> "ProbeSet":
        """The first ``items_per_task`` items of each task (same ids in every language), in ``languages``."""
        wanted = set(languages) if languages is not None else None
        if wanted is not None:
            missing = sorted(wanted - set(self.languages))
            if missing:
                raise ValueError(f"{self.name} has no items in {', '.join(missing)}; it has {', '.join(self.languages)}.")
        kept_ids: dict[str, list[str]] = {}
        for item in self.items:
            kept_ids.setdefault(item.task, [])
            if item.item_id not in kept_ids[item.task]:
                kept_ids[item.task].append(item.item_id)
        if items_per_task is not None:
            kept_ids = {task: ids[:items_per_task] for task, ids in kept_ids.items()}
        keep = {(task, i) for task, ids in kept_ids.items() for i in ids}
        items = tuple(
            item for item in self.items
            if (item.task, item.item_id) in keep and (wanted is None or item.language in wanted)
        )
        return ProbeSet(items, self.name, self.notes)


@dataclass(frozen=True)
class Templates:
    """Per language: how an item becomes a prompt, and the NLI answer words (yes/no)."""

    physical: Mapping[str, str] = field(default_factory=dict)  # "... {goal} ..."
    nli: Mapping[str, str] = field(default_factory=dict)  # "... {premise} ... {hypothesis} ..."
    nli_choices: Mapping[str, tuple[str, str]] = field(default_factory=dict)


# --- reading -----------------------------------------------------------------------------------


def _read(path: Path, source: str) -> dict:
    if not path.is_file():
        raise DatasetError([f"file not found: {path}"], source=source)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetError([f"{path.name} is not valid UTF-8 JSON: {err}"], source=source) from None
    if not isinstance(data, dict):
        raise DatasetError([f"{path.name}: expected a JSON object with 'templates' and 'items'"], source=source)
    return data


def _text(raw: Any, where: str, problems: list[str]) -> str | None:
    if not isinstance(raw, str):
        problems.append(f"{where}: expected a string, got {type(raw).__name__}" if raw is not None else f"{where}: missing")
        return None
    if not raw.strip():
        problems.append(f"{where}: empty")
        return None
    return raw


def _templates(data: dict, task: str, slots: tuple[str, ...], problems: list[str]) -> dict[str, dict]:
    raw = data.get("templates")
    if not isinstance(raw, dict) or not raw:
        problems.append("templates: expected an object {language: {'prompt': ...}}")
        return {}
    out = {}
    for lang, spec in raw.items():
        where = f"templates/{lang}"
        if not isinstance(spec, dict):
            problems.append(f"{where}: expected an object with 'prompt'")
            continue
        prompt = _text(spec.get("prompt"), f"{where}.prompt", problems)
        if prompt is not None:
            absent = [s for s in slots if "{" + s + "}" not in prompt]
            if absent:
                problems.append(f"{where}.prompt: lacks {', '.join('{' + s + '}' for s in absent)}")
                prompt = None
        entry: dict[str, Any] = {"prompt": prompt}
        if task == "nli":
            entry["choices"] = _pair(spec.get("choices"), f"{where}.choices", problems)
        out[lang] = entry
    return out


def _pair(raw: Any, where: str, problems: list[str]) -> tuple[str, str] | None:
    if not isinstance(raw, list) or len(raw) != 2:
        problems.append(f"{where}: expected a list of 2 strings")
        return None
    first, second = (_text(v, f"{where}[{i}]", problems) for i, v in enumerate(raw))
    if first is None or second is None:
        return None
    if first.strip().casefold() == second.strip().casefold():
        problems.append(f"{where}: both choices are '{first}'")
        return None
    return first, second


def load_probe_file(path: str | Path, task: str) -> ProbeSet:
    """Read one probe file (``task`` is ``physical`` or ``nli``); every fault is listed at once."""
    if task not in TASKS:
        raise ValueError(f"Unknown probe task '{task}'; tasks are {', '.join(TASKS)}.")
    path = Path(path)
    source = f"{task} probe {path.name}"
    data = _read(path, source)
    problems: list[str] = []
    slots = ("goal",) if task == "physical" else ("premise", "hypothesis")
    templates = _templates(data, task, slots, problems)
    raw_items = data.get("items")
    if not isinstance(raw_items, list) or not raw_items:
        problems.append("items: expected a non-empty list")
        raw_items = []
    items: list[ProbeItem] = []
    seen: Counter[str] = Counter()
    for index, raw in enumerate(raw_items):
        items += _items(raw, index, task, templates, problems, seen)
    duplicates = [i for i, n in seen.items() if n > 1]
    if duplicates:
        problems.append(f"items: duplicate ids {', '.join(duplicates)}")
    if problems:
        raise DatasetError(problems, source=source)
    return ProbeSet(tuple(items), name=f"{data.get('name', task)}")


def _items(raw: Any, index: int, task: str, templates: dict, problems: list[str], seen: Counter) -> list[ProbeItem]:
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str) or not raw["id"].strip():
        problems.append(f"items[{index}]: expected an object with a string 'id'")
        return []
    item_id = raw["id"]
    seen[item_id] += 1
    answer = _answer(raw, item_id, task, problems)
    text = raw.get("text")
    if not isinstance(text, dict) or not text:
        problems.append(f"{item_id}/text: expected an object {{language: {{...}}}}")
        return []
    out = []
    for lang, fields in text.items():
        where = f"{item_id}/{lang}"
        if lang not in templates:
            problems.append(f"{where}: no template for language '{lang}' (add it under 'templates')")
            continue
        if not isinstance(fields, dict):
            problems.append(f"{where}: expected an object")
            continue
        template = templates[lang]
        if task == "physical":
            goal = _text(fields.get("goal"), f"{where}/goal", problems)
            choices = _pair(fields.get("choices"), f"{where}/choices", problems)
            if goal is None or choices is None or template["prompt"] is None or answer is None:
                continue
            prompt = template["prompt"].format(goal=goal.strip())
        else:
            premise = _text(fields.get("premise"), f"{where}/premise", problems)
            hypothesis = _text(fields.get("hypothesis"), f"{where}/hypothesis", problems)
            if premise is not None and hypothesis is not None and premise.strip() == hypothesis.strip():
                problems.append(f"{where}/hypothesis: same as the premise")
                continue
            choices = template.get("choices")
            if premise is None or hypothesis is None or template["prompt"] is None or choices is None or answer is None:
                continue
            prompt = template["prompt"].format(premise=premise.strip(), hypothesis=hypothesis.strip())
        out.append(ProbeItem(task, item_id, lang, prompt, (choices[0].strip(), choices[1].strip()), answer))
    return out


def _answer(raw: dict, item_id: str, task: str, problems: list[str]) -> int | None:
    if task == "physical":
        value = raw.get("answer")
        if value not in (0, 1) or isinstance(value, bool):
            problems.append(f"{item_id}/answer: expected 0 or 1 (index of the right choice), got {value!r}")
            return None
        return int(value)
    label = raw.get("label")
    if label not in NLI_LABELS:
        problems.append(f"{item_id}/label: expected one of {', '.join(NLI_LABELS)}, got {label!r}")
        return None
    return NLI_LABELS.index(label)


def load_templates() -> Templates:
    """The bundled per-language templates (importers reuse them for public sets)."""
    physical = _read(PHYSICAL_PATH, "physical probe")["templates"]
    nli = _read(NLI_PATH, "nli probe")["templates"]
    return Templates(
        physical={lang: spec["prompt"] for lang, spec in physical.items()},
        nli={lang: spec["prompt"] for lang, spec in nli.items()},
        nli_choices={lang: tuple(spec["choices"]) for lang, spec in nli.items()},
    )


@lru_cache(maxsize=1)
def load_bundled_probe() -> ProbeSet:
    """Both bundled tasks in the 12 MKEB languages (assets/ability/), validated once per process."""
    physical = load_probe_file(PHYSICAL_PATH, "physical")
    nli = load_probe_file(NLI_PATH, "nli")
    return ProbeSet(physical.items + nli.items, name="bundled ability probe")


def load_sentences(path: str | Path = SENTENCES_PATH) -> dict[str, tuple[str, ...]]:
    """Ordinary sentences per language: ``{"en": ("The weather is nice today, …", …), …}``."""
    path = Path(path)
    source = f"sentences {path.name}"
    data = _read(path, source)
    rows = data.get("sentences")
    problems: list[str] = []
    if not isinstance(rows, list) or not rows:
        raise DatasetError(["sentences: expected a non-empty list of {'id', 'text': {language: sentence}}"], source=source)
    out: dict[str, list[str]] = {}
    for index, row in enumerate(rows):
        if not isinstance(row, dict) or not isinstance(row.get("id"), str):
            problems.append(f"sentences[{index}]: expected an object with a string 'id'")
            continue
        text = row.get("text")
        if not isinstance(text, dict) or not text:
            problems.append(f"{row['id']}/text: expected an object {{language: sentence}}")
            continue
        for lang, sentence in text.items():
            value = _text(sentence, f"{row['id']}/{lang}", problems)
            if value is not None:
                out.setdefault(lang, []).append(value.strip())
    if problems:
        raise DatasetError(problems, source=source)
    return {lang: tuple(v) for lang, v in out.items()}
