"""Named sets of defaults per model: ``paper`` and, where a sweep chose them, ``tuned``.

``paper`` is each config class's defaults (the paper's / the authors' settings) completed by the
per-architecture table in ``hparams``. ``tuned`` changes some fields on top of ``paper`` for one
model type (``config.model_type``), chosen on the dev split by the rule in docs/tuning.md; the
provenance (split, sample, rule, date, results file) is in docs/tuning.md, "Chosen presets". A
model type without tuned values gets the paper preset under either name.
"""

from __future__ import annotations

from typing import Any, Mapping

PRESETS: tuple[str, ...] = ("tuned", "paper")

TUNED: dict[str, dict[str, dict[str, Any]]] = {
    # Gemma 3 270M (the default model): rule dev-v2 (docs/tuning.md, 2026-12-03) on sweep v3 for
    # MEMLA, FT-L and IKE (12 dev facts × 12 configurations; IKE 5) and on sweep v4 for ROME and
    # MEMIT (4 dev facts × 12 configurations). PMET: swept in v4, no configuration passed, none.
    "gemma3_text": {
        "memla": {"neurons.threshold": 0.2, "stop_p_new": 0.99, "locality_weight": 3.0, "scale_in_training": False},
        "ft": {"layer": 14 / 17, "lr": 1e-3, "norm_constraint": 5e-3},
        "ike": {"demonstrations": 1},
        "rome": {"layer": 4 / 17, "clamp_norm_factor": 8.0, "kl_factor": 0.5},
        "memit": {"layers": (3 / 17, 8 / 17), "clamp_norm_factor": 2.0},  # λ 2000 is its family default
    },
}
"""model_type -> method -> {dotted field: value}; filled from docs/tuning.md's chosen presets.
Layer fields (``hparams.LAYER_FIELDS``) hold relative depths, as in ``hparams.FAMILY_DEFAULTS``,
so that another size of the same model type gets the same depth, not the same index."""

TUNED_PROVENANCE: dict[str, str] = {
    "gemma3_text": "chosen by rule dev-v2 on sweep v3 (MEMLA, FT-L, IKE: 12 dev facts, one per relation, "
    "12 configurations each, IKE 5), 2026-12-03; ROME and MEMIT on sweep v4 (4 dev facts, 12 configurations "
    "each; PMET swept, none passed); docs/tuning.md",
}
"""model_type -> one line saying where its tuned values come from (shown by the CLI and the app)."""


def model_type(lm) -> str:
    return str(getattr(lm.model.config, "model_type", ""))


def preset_values(method: str, lm, preset: str = "paper") -> Mapping[str, Any]:
    """The fields ``preset`` changes for ``method`` on ``lm`` (empty for ``paper``)."""
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset '{preset}'; choose one of {', '.join(PRESETS)}.")
    if preset == "paper":
        return {}
    values = dict(TUNED.get(model_type(lm), {}).get(method, {}))
    return {path: _absolute(path, value, lm) for path, value in values.items()}


def _absolute(path: str, value: Any, lm) -> Any:
    """Relative depths of layer fields as this model's layer indices (``hparams.layer_index``);
    a tuple lists the edited layers one by one (not a (first, last) range as in the family table),
    as the sweep's ``memit.layers=2+4`` did. On a model with fewer layers two depths can fall on
    one layer (3/17 and 8/17 of a 2-layer model are both layer 0): it is listed once."""
    from .hparams import LAYER_FIELDS, layer_index

    if path not in LAYER_FIELDS:
        return value
    if isinstance(value, tuple):
        return tuple(dict.fromkeys(layer_index(v, lm.num_layers) for v in value))
    return layer_index(value, lm.num_layers)


def has_tuned(method: str, lm) -> bool:
    """Whether ``tuned`` means something other than ``paper`` for this method and model."""
    return bool(TUNED.get(model_type(lm), {}).get(method))


def describe_preset(method: str, lm, preset: str) -> str:
    """One line for people: which defaults an edit started from, and why."""
    values = preset_values(method, lm, preset)
    if preset == "paper":
        return "preset: paper (the paper's settings; --preset tuned for this model's tuned ones, where chosen)"
    if not values:
        return f"preset: tuned = paper (no tuned {method} settings for model type '{model_type(lm)}' yet)"
    changed = ", ".join(f"{k}={v}" for k, v in values.items())
    return f"preset: tuned ({changed}; {TUNED_PROVENANCE.get(model_type(lm), 'docs/tuning.md')})"
