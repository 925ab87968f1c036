"""Editing methods by name: one entry per method, its config class and its editor class.

Every editor is built as ``editor_cls(config)`` (the baselines also take ``None``: their
per-architecture defaults, see ``hparams``) and offers ``compute(lm, request, on_step) -> Edit``. MEND (Mitchell et al. 2022) fits the same
interface but needs what this package cannot train on a laptop: a hypernetwork per model,
trained on editing data (e.g. zsRE), that maps the fine-tuning gradient of the edit prompt to a
weight update; it would register here with its trained weights as part of its config.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields, is_dataclass
from typing import Any, Callable

from .ft import FTConfig, FTEditor
from .ike import IkeConfig, IkeEditor
from .memit import MemitConfig, MemitEditor
from .memla import MemlaConfig, MemlaEditor
from .pmet import PmetConfig, PmetEditor
from .rome import RomeConfig, RomeEditor


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
    "ft": MethodSpec(
        "ft", "FT-L", FTConfig, FTEditor,
        "Fine-tunes one MLP down projection on the edit prompt within an L∞ bound (Zhu et al. 2020).",
    ),
    "rome": MethodSpec(
        "rome", "ROME", RomeConfig, RomeEditor,
        "Rank-one update of one MLP down projection at the subject's last token (Meng et al. 2022).",
    ),
    "memit": MethodSpec(
        "memit", "MEMIT", MemitConfig, MemitEditor,
        "The ROME update spread over a range of MLP layers (Meng et al. 2023).",
    ),
    "pmet": MethodSpec(
        "pmet", "PMET", PmetConfig, PmetEditor,
        "MEMIT with the attention output optimised alongside the MLP output (Li et al. 2024).",
    ),
    "ike": MethodSpec(
        "ike", "IKE", IkeConfig, IkeEditor,
        "In-context editing: the new fact and demonstrations before every prompt, no weight change (Zheng et al. 2023).",
    ),
}


def method_spec(name: str) -> MethodSpec:
    key = name.lower()
    if key not in METHODS:
        raise ValueError(f"Unknown editing method '{name}'; available: {', '.join(METHODS)}.")
    return METHODS[key]


def config_fields(config_cls: type) -> list[str]:
    """Names of a config's plain (scalar) fields, for CLIs and forms."""
    return [
        f.name for f in fields(config_cls)
        if not is_dataclass(f.default) and not (f.default_factory is not MISSING and is_dataclass(f.default_factory))
    ]
