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
    # Gemma 3 270M (the default model): rule dev-v1 on the dev sweep of 2026-12-02 (docs/tuning.md).
    "gemma3_text": {"memla": {"coefficient": 1.0, "locality_weight": 1.0}},
}
"""model_type -> method -> {dotted field: value}; filled from docs/tuning.md's chosen presets."""

TUNED_PROVENANCE: dict[str, str] = {
    "gemma3_text": "chosen by rule dev-v1 on 3 dev facts × 12 configurations, 2026-12-02; docs/tuning.md",
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
    return dict(TUNED.get(model_type(lm), {}).get(method, {}))


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
