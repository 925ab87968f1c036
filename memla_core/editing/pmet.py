"""PMET: MEMIT that optimises the attention output too (Li et al. 2024, "PMET: Precise Model
Editing in a Transformer").

PMET's observation: the residual stream at the edited layers carries what attention *and* the
MLP wrote, so a target optimised on the residual alone asks the MLP to absorb the attention's
share as well and over-writes it. PMET therefore optimises two changes at the last layer L
together — δ_attn on the attention output projection's output and δ_mlp on the down
projection's output (each clamped and decayed relative to its own module's output) — and then
spreads each target over the layer range in that module's own output space: for layer l (i-th
of n) ΔW = ((z − cur) / √(n − i)) kᵀ (k kᵀ + λ·C)⁻¹, where z is the optimised output at L, cur
the module's current output at L and k its input at l averaged over the prefixed prompts (the
authors' code, EasyEdit ``pmet_main.py``).

The paper writes only the MLP weights ("only using the optimized TC hidden states of FFN to
precisely update FFN weights"): δ_attn exists to take the attention's share off the MLP target.
``rewrite_attention=True`` also writes the attention output projection with its own target and
statistics, the option the authors' code offers through ``rewrite_module_tmps``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..fields import described
from ..models import LoadedModel
from .base import BatchEditRequest, ConfiguredEditor, Edit, EditRequest, StepFn, WeightEdit
from .layer_stats import LayerStats, ModuleKind, StatsConfig, module_name
from .locate import (
    TemporaryWeights,
    capture,
    check_layer_range,
    check_layers,
    layers_field,
    layout_deltas,
    least_squares_update,
    mom2_field,
    optimise_each_fact,
    prefixed_rows,
    value_field,
    with_int_layers,
)


@dataclass(frozen=True)
class PmetConfig:
    """PMET hyperparameters; defaults from the authors' GPT-J settings (EasyEdit ``PMET/gpt-j-6B.yaml``)."""

    layers: tuple[int, ...] | None = layers_field()
    mom2_update_weight: float | None = mom2_field()
    rewrite_attention: bool = described(
        False, "Also write the attention output projection (see the module doc).", label="Rewrite attention too"
    )
    v_lr: float = value_field("v_lr", 0.2)
    v_steps: int = value_field("v_steps", 30)
    v_weight_decay: float = value_field("v_weight_decay", 0.5)
    kl_factor: float = value_field("kl_factor", 1.0)
    clamp_norm_factor: float = value_field("clamp_norm_factor", 0.75)
    stop_loss: float = value_field("stop_loss", 5e-2)
    context_templates: int = value_field("context_templates", 5)
    context_length: int = value_field("context_length", 10)
    seed: int = value_field("seed", 0)
    stats: StatsConfig = value_field("stats", StatsConfig)

    def __post_init__(self) -> None:
        check_layer_range(self)


class PmetEditor(ConfiguredEditor):
    name = "pmet"
    config_cls = PmetConfig

    def __init__(self, config: PmetConfig | None = None):
        super().__init__(with_int_layers(config or PmetConfig()))

    def compute_batch(self, lm: LoadedModel, batch: BatchEditRequest, on_step: StepFn | None = None) -> Edit:
        """Every fact of ``batch`` at once: one pair of targets per fact, then per layer and
        module one least-squares update for every fact's key (MEMIT's mass edit)."""
        return self.compute(lm, batch, on_step)

    def edit_weights(
        self, lm: LoadedModel, request: EditRequest | BatchEditRequest, cfg: PmetConfig, on_step: StepFn | None
    ) -> WeightEdit:
        layers = list(cfg.layers)
        check_layers(layers, lm, "PmetConfig.layers")
        last = layers[-1]
        kinds: list[ModuleKind] = ["down_proj", "attn_out"] if cfg.rewrite_attention else ["down_proj"]
        at_last = {kind: module_name(lm, kind, last) for kind in ("down_proj", "attn_out")}
        with lm.lock:
            prefixes, rows = prefixed_rows(lm, request, cfg)
            initials = []  # per fact: each module's output at the bare prompt's subject token
            for fact_rows in rows:
                seen = capture(lm, fact_rows, outputs=list(at_last.values()))
                initials.append({name: seen.outputs[name][0] for name in at_last.values()})
            deltas, trace = optimise_each_fact(lm, request, rows, initials, cfg, on_step, "PMET")
            targets = [{kind: i[name] + d[name] for kind, name in at_last.items()} for i, d in zip(initials, deltas)]
            delta_norms = [{kind: float(d[name].norm()) for kind, name in at_last.items()} for d in deltas]
            stats = LayerStats(lm, cfg.stats)
            for kind in kinds:
                stats.second_moments(layers, kind)  # one pass per module kind for the whole range
            with TemporaryWeights(lm) as written:
                for i, layer in enumerate(layers):
                    for kind in kinds:
                        name = module_name(lm, kind, layer)
                        keys, residuals = [], []
                        for fact_rows, target in zip(rows, targets):
                            now = capture(lm, fact_rows, inputs=[name], outputs=[at_last[kind]])
                            keys.append(now.inputs[name][: fact_rows.n_rewrite].mean(0))
                            residuals.append((target[kind] - now.outputs[at_last[kind]][0]) / math.sqrt(len(layers) - i))
                        cov = stats.regularised(layer, kind)
                        update = least_squares_update(torch.stack(keys), torch.stack(residuals), cov, cfg.mom2_update_weight)
                        written.add(layout_deltas(lm, {name: update}, trace, "PMET"))
        details = {
            "layers": layers,
            "prefixes": prefixes,
            "delta_norms": {kind: max(norms[kind] for norms in delta_norms) for kind in at_last},
        }
        if len(rows) > 1:
            details["delta_norms_per_fact"] = delta_norms
        return written.deltas, trace, details
