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

import time
from dataclasses import asdict, dataclass

from ..fields import described
from ..models import LoadedModel
from .base import Edit, EditRequest, StepFn
from .hparams import resolve
from .layer_stats import LayerStats, StatsConfig
from .locate import (
    build_rows,
    capture,
    check_layers,
    check_value_fields,
    context_prefixes,
    finite_or_raise,
    optimise_values,
    rank_one_update,
    to_weight_layout,
    true_answer_rows,
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


class RomeEditor:
    name = "rome"

    def __init__(self, config: RomeConfig | None = None):
        self.config = config or RomeConfig()

    def compute(self, lm: LoadedModel, request: EditRequest, on_step: StepFn | None = None) -> Edit:
        start = time.perf_counter()
        cfg = resolve(self.config, "rome", lm)
        check_layers([cfg.layer], lm, "RomeConfig.layer")
        name = lm.adapter.down_proj_name(cfg.layer)
        with lm.lock:
            prefixes = context_prefixes(lm, request.source_language, cfg.context_templates, cfg.context_length, cfg.seed)
            rows = build_rows(lm, request, prefixes)
            seen = capture(lm, rows, inputs=[name], outputs=[name])
            key = seen.inputs[name][: rows.n_rewrite].mean(0)
            deltas, trace = optimise_values(
                lm, rows, {name: seen.outputs[name][0]}, cfg, on_step, "ROME", true_answer_rows(lm, request)
            )
            cov = LayerStats(lm, cfg.stats).regularised(cfg.layer)
            update = rank_one_update(key, deltas[name], cov).to(lm.device)
        weight_deltas = {f"{name}.weight": to_weight_layout(lm, update)}
        finite_or_raise(weight_deltas, trace, "ROME")
        return Edit.for_request(
            self.name, request, start,
            weight_deltas=weight_deltas,
            trace=trace,
            config=asdict(cfg),
            details={"layer": cfg.layer, "prefixes": prefixes, "delta_norm": float(deltas[name].norm())},
        )

