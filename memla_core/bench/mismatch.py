"""Why a results file cannot simply be resumed with new settings, said field by field, and the
overrides that would resume it with the file's own settings instead."""

from __future__ import annotations

import json
from typing import Any, Sequence

import pandas as pd

from .config import MethodRun
from .summaries import method_label


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flat(item, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): value}


def _file_settings(existing: pd.DataFrame, method: str) -> dict[str, Any] | None:
    rows = existing[existing["method"] == method] if "method" in existing else existing.iloc[:0]
    if rows.empty:
        return None
    try:
        return _flat(json.loads(str(rows["settings"].iloc[0])))
    except json.JSONDecodeError:
        return {}


def _comparable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def setting_differences(existing: pd.DataFrame, methods: Sequence[MethodRun], model_key: str, seed: int) -> list[str]:
    """One line per setting that differs between the file's rows and this run, e.g.
    ``MEMLA lr: 0.05 in the file, 0.01 now``; empty when the file can be resumed as it is."""
    lines: list[str] = []
    if not existing.empty and "model" in existing and set(existing["model"]) - {model_key}:
        lines.append(f"model: {', '.join(sorted(set(existing['model'])))} in the file, {model_key} now")
    if not existing.empty and "seed" in existing:
        seeds = set(pd.to_numeric(existing["seed"], errors="coerce").dropna().astype(int))
        if seeds - {seed}:
            lines.append(f"seed: {', '.join(map(str, sorted(seeds)))} in the file, {seed} now")
    for method in methods:
        theirs = _file_settings(existing, method.name)
        if theirs is None:
            continue
        ours = _flat(json.loads(method.settings))
        for field in sorted(set(theirs) | set(ours)):
            if _comparable(theirs.get(field)) != _comparable(ours.get(field)):
                lines.append(f"{method_label(method.name)} {field}: {theirs.get(field)!r} in the file, "
                             f"{ours.get(field)!r} now")
    return lines


def file_overrides(existing: pd.DataFrame, methods: Sequence[MethodRun]) -> dict[str, dict[str, Any]]:
    """``method_overrides`` that give each method the file's value of every field that differs."""
    overrides: dict[str, dict[str, Any]] = {}
    for method in methods:
        theirs = _file_settings(existing, method.name)
        if not theirs:
            continue
        ours = _flat(json.loads(method.settings))
        changed = {f: v for f, v in theirs.items() if f in ours and _comparable(v) != _comparable(ours[f])}
        if changed:
            overrides[method.name] = changed
    return overrides


def file_seed(existing: pd.DataFrame, default: int) -> int:
    seeds = pd.to_numeric(existing.get("seed", pd.Series(dtype=float)), errors="coerce").dropna().astype(int)
    return int(seeds.iloc[0]) if not seeds.empty else default
