"""Per-architecture defaults of the locate-and-edit baselines, as data.

The original hyperparameter files name absolute layers of one model each (ROME on GPT-2 XL:
layer 17 of 48). Here a layer is a *relative depth* p ∈ [0, 1], turned into
``round(p · (num_layers − 1))`` for the model at hand, so one entry per architecture family
(``ArchitectureAdapter.family``) serves every size of that family, and a 2-layer test model
gets a valid layer too. Only the fields a family needs to differ on are listed; every other
field keeps the default of its config class (the paper's value). A config field left ``None``
means "take it from this table" — ``resolve`` fills it (``registry.default_config`` builds a
whole config).

Where the numbers come from (layers as given in the authors' files, then relative):
- GPT-2 (GPT-2 XL, 48 layers): FT-L layer 0 (ROME's ``FT/gpt2-xl_constr.json``); ROME layer 17;
  MEMIT layers 13–17 (``MEMIT/gpt2-xl.json``).
- GPT-J (28 layers): ROME layer 5; MEMIT and PMET layers 3–8 (EasyEdit ``gpt-j-6B.yaml``).
- LLaMA family (also Gemma, Qwen, Mistral): FT layer 21 of 32 (EasyEdit ``FT/llama-7b.yaml``).
  ROME, MEMIT and PMET were tuned on the default model, Gemma 3 270M (18 layers), on the fact
  geo-capital-france: ROME at layer 6 (6/17 ≈ 0.35, the depth of GPT-2 XL's layer 17) gives
  P(new) 0.997, while the 7B files' depth (5/31 → layer 3) flips the neighbour prompts too;
  MEMIT/PMET at layers 4–6 reach P(new) ≈ 0.96, while layers 2–4 (the 7B files' 4–8/32) leave
  P(new) < P(true). FT-L needs a looser L∞ bound (5e-3) and lr 1e-3 to flip the answer in 25
  steps. ``mom2_update_weight`` is 2000 instead of 15000: Gemma's keys are 2048-wide, so
  kᵀC⁻¹k is ≈ 2–9·10³ and 15000 would write only a small fraction of each layer's target.
- GPT-NeoX (NeoX-20B, 44 layers): ROME layer 15 (ROME paper, App.).
- BLOOM, OPT, XGLM have no published ROME settings; they get the early-middle position that the
  other families share (≈ 0.2–0.35 of the depth), where causal tracing finds subject recall.
- MEND edits both MLP projections of the last three blocks (MEND paper: GPT-2 XL layers 45–47,
  GPT-J 25–27; EasyEdit's LLaMA-7B file 29–31). As depths: the last 3 of Gemma 3 270M's 18
  (15/17) for the LLaMA family (the last 5 of a 32-layer model), the top tenth elsewhere.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

from ..models import LoadedModel

RelativeLayer = float
"""A depth in [0, 1]; ``layer_index`` turns it into a layer of a given model."""

LAYER_FIELDS = ("layer", "layers")
"""Fields holding relative depths: ``layer`` (one) or ``layers`` (an inclusive (first, last) range)."""

UNPUBLISHED_DEFAULTS: dict[str, dict[str, Any]] = {
    "ft": {"layer": 0.5},
    "rome": {"layer": 0.25},
    "memit": {"layers": (0.15, 0.3)},
    "pmet": {"layers": (0.15, 0.3)},
    "mend": {"layers": (0.9, 1.0)},
}
"""Families without published settings: the early-middle depth the others share (see above)."""

FAMILY_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "gpt2": {
        "ft": {"layer": 0.0},
        "rome": {"layer": 17 / 47},
        "memit": {"layers": (13 / 47, 17 / 47)},
        "pmet": {"layers": (13 / 47, 17 / 47)},
        "mend": {"layers": (45 / 47, 1.0)},
    },
    "gptj": {
        "ft": {"layer": 21 / 27},
        "rome": {"layer": 5 / 27},
        "memit": {"layers": (3 / 27, 8 / 27)},
        "pmet": {"layers": (3 / 27, 8 / 27)},
        "mend": {"layers": (25 / 27, 1.0)},
    },
    "llama": {
        "ft": {"layer": 21 / 31, "norm_constraint": 5e-3, "lr": 1e-3},
        "rome": {"layer": 6 / 17},
        "memit": {"layers": (4 / 17, 6 / 17), "mom2_update_weight": 2000.0},
        "pmet": {"layers": (4 / 17, 6 / 17), "mom2_update_weight": 2000.0},
        "mend": {"layers": (15 / 17, 1.0)},
    },
    "gpt_neox": {
        "ft": {"layer": 0.5},
        "rome": {"layer": 15 / 43},
        "memit": {"layers": (11 / 43, 15 / 43)},
        "pmet": {"layers": (11 / 43, 15 / 43)},
        "mend": {"layers": (41 / 43, 1.0)},
    },
    **{family: UNPUBLISHED_DEFAULTS for family in ("bloom", "opt", "xglm")},
}

PAPER_DEFAULTS: dict[str, dict[str, Any]] = {
    "ft": {"lr": 5e-4, "norm_constraint": 5e-4},  # FT-L: ROME paper App. (Zhu et al. 2020's L∞ bound)
    "memit": {"mom2_update_weight": 15000.0},  # MEMIT/gpt-j-6B.json
    "pmet": {"mom2_update_weight": 15000.0},  # EasyEdit PMET gpt-j-6B.yaml
}
"""Values of ``None``-defaulted fields for families that do not list them."""


def layer_index(position: RelativeLayer, num_layers: int) -> int:
    if not 0.0 <= position <= 1.0:
        raise ValueError(f"Relative layer {position} is outside [0, 1]; fix its entry in hparams.FAMILY_DEFAULTS.")
    return min(num_layers - 1, max(0, round(position * (num_layers - 1))))


def layer_range(first: RelativeLayer, last: RelativeLayer, num_layers: int) -> tuple[int, ...]:
    lo, hi = layer_index(first, num_layers), layer_index(last, num_layers)
    return tuple(range(min(lo, hi), max(lo, hi) + 1))


def family_values(method: str, lm: LoadedModel) -> dict[str, Any]:
    """The table's values of ``method`` for ``lm``'s family, layers made absolute."""
    family = lm.adapter.family
    if family not in FAMILY_DEFAULTS:
        raise KeyError(
            f"No baseline defaults for architecture family '{family}'. Add an entry to "
            f"memla_core.editing.hparams.FAMILY_DEFAULTS (families with entries: {', '.join(FAMILY_DEFAULTS)}), "
            "or pass explicit layers in the method's config."
        )
    values = {**PAPER_DEFAULTS.get(method, {}), **FAMILY_DEFAULTS[family].get(method, {})}
    n = lm.num_layers
    if "layer" in values:
        values["layer"] = layer_index(values["layer"], n)
    if "layers" in values:
        values["layers"] = layer_range(*values["layers"], n)
    return values


def resolve(config: Any, method: str, lm: LoadedModel) -> Any:
    """``config`` with every ``None`` field filled from the table for ``lm``."""
    missing = [f.name for f in fields(config) if getattr(config, f.name) is None]
    if not missing:
        return config
    values = family_values(method, lm)
    fill = {name: values[name] for name in missing if name in values}
    unfilled = [name for name in missing if name not in values]
    if unfilled:
        raise ValueError(
            f"{type(config).__name__} fields {unfilled} are None and have no default for family "
            f"'{lm.adapter.family}': add them to memla_core.editing.hparams.FAMILY_DEFAULTS"
            f"['{lm.adapter.family}']['{method}'] (or PAPER_DEFAULTS['{method}']), or give them explicitly."
        )
    return replace(config, **fill)

