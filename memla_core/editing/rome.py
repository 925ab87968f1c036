"""ROME: rank-one editing of one MLP down projection (Meng et al. 2022, "Locating and Editing
Factual Associations in GPT").

The down projection is read as a key–value memory: its input at the subject's last token is a
key k, its output a value v. ROME
1. averages the key k* over the edit prompt alone and preceded by a few short prefixes the
   model writes itself (seeded), so the edit does not hinge on one exact context;
2. optimises a change δ of the value at that position, on every prefixed prompt at once, so
   that the model outputs ``target_new``; a KL term keeps what the model predicts right after
   the subject, a weight decay and an L2 clamp (‖δ‖ ≤ clamp·‖v‖) keep δ small;
3. writes v* = W k* + δ into W with the least change under the key statistics C:
   ΔW = (v* − W k*) (C⁻¹k*)ᵀ / (k*ᵀ C⁻¹ k*), so that ΔW k* = δ exactly.

Simplifications: the KL prompt is the subject alone (ROME's is the English "{subject} is a";
the bare subject works in every language); C comes from ``layer_stats`` (self-generated text,
not Wikipedia); 5 prefixes of 10 tokens (MEMIT's set) instead of ROME's 20.

The steps MEMIT and PMET share with ROME (rows, key capture, value optimisation, updates) are in
``locate``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..fields import described
from ..models import LoadedModel
from .base import ConfiguredEditor, EditRequest, StepFn, WeightEdit
from .layer_stats import LayerStats, StatsConfig
from .locate import (
    capture,
    check_layers,
    check_value_fields,
    layout_deltas,
    optimise_each_fact,
    prefixed_rows,
    rank_one_update,
    value_field,
)


@dataclass(frozen=True)
class RomeConfig:
    """ROME hyperparameters; defaults from the authors' ``ROME/gpt2-xl.json`` (Meng et al. 2022)."""

    layer: int | None = described(
        None,
        "Layer whose MLP down projection gets the rank-one update; empty = per-architecture default "
        "(hparams.FAMILY_DEFAULTS).",
        label="Layer",
    )
    v_lr: float = value_field("v_lr", 0.5)
    v_steps: int = value_field("v_steps", 20, "ROME calls it v_num_grad_steps.")
    v_weight_decay: float = value_field("v_weight_decay", 0.5)
    kl_factor: float = value_field("kl_factor", 0.0625)
    clamp_norm_factor: float = value_field("clamp_norm_factor", 4.0)
    stop_loss: float = value_field("stop_loss", 5e-2)
    context_templates: int = value_field("context_templates", 5)
    context_length: int = value_field("context_length", 10)
    seed: int = value_field("seed", 0)
    stats: StatsConfig = value_field("stats", StatsConfig)

    def __post_init__(self) -> None:
        check_value_fields(self)


# --------------------------------------------------------------------------- editor


class RomeEditor(ConfiguredEditor):
    name = "rome"
    config_cls = RomeConfig

    def edit_weights(self, lm: LoadedModel, request: EditRequest, cfg: RomeConfig, on_step: StepFn | None) -> WeightEdit:
        check_layers([cfg.layer], lm, "RomeConfig.layer")
        name = lm.adapter.down_proj_name(cfg.layer)
        with lm.lock:
            prefixes, (rows,) = prefixed_rows(lm, request, cfg)
            seen = capture(lm, rows, inputs=[name], outputs=[name])
            key = seen.inputs[name][: rows.n_rewrite].mean(0)
            reference = {name: seen.outputs[name][0]}
            (deltas,), trace = optimise_each_fact(lm, request, [rows], [reference], cfg, on_step, "ROME")
            cov = LayerStats(lm, cfg.stats).regularised(cfg.layer)
            update = rank_one_update(key, deltas[name], cov)
        weight_deltas = layout_deltas(lm, {name: update}, trace, "ROME")
        details = {"layer": cfg.layer, "prefixes": prefixes, "delta_norm": float(deltas[name].norm())}
        return weight_deltas, trace, details
