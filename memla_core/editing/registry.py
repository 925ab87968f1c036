"""Editing methods by name: one entry per method, its config class and its editor class."""

from __future__ import annotations

from dataclasses import dataclass, fields, is_dataclass
from typing import Any, Callable

from .memla import MemlaConfig, MemlaEditor


@dataclass(frozen=True)
class MethodSpec:
    name: str
    title: str
    config_cls: type
    editor_cls: Callable[..., Any]
    description: str


METHODS: dict[str, MethodSpec] = {
    "memla": MethodSpec(
        "memla", "MEMLA", MemlaConfig, MemlaEditor,
        "Neuron-masked LoRA on language-specific and language-independent knowledge neurons.",
    ),
}


def method_spec(name: str) -> MethodSpec:
    key = name.lower()
    if key not in METHODS:
        raise ValueError(f"Unknown editing method '{name}'; available: {', '.join(METHODS)}.")
    return METHODS[key]


def config_fields(config_cls: type) -> list[str]:
    """Names of a config's plain (scalar) fields, for CLIs and forms."""
    return [f.name for f in fields(config_cls) if not is_dataclass(f.default)]
