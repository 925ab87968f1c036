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
import time
from dataclasses import asdict, dataclass

import torch

from ..fields import described
from ..models import LoadedModel
from .base import BatchEditRequest, Edit, EditRequest, StepFn
from .batch import fact_step, fact_trace
from .hparams import resolve
from .layer_stats import LayerStats, ModuleKind, StatsConfig, module_name
from .locate import (
    TemporaryWeights,
    build_rows,
    capture,
    check_layer_range,
    check_layers,
    context_prefixes,
    finite_or_raise,
    layers_field,
    least_squares_update,
    mom2_field,
    optimise_values,
    to_weight_layout,
    true_answer_rows,
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


class PmetEditor:
    name = "pmet"

    def __init__(self, config: PmetConfig | None = None):
        self.config = with_int_layers(config or PmetConfig())

    def compute(self, lm: LoadedModel, request: EditRequest, on_step: StepFn | None = None) -> Edit:
        return self._compute(lm, request, on_step)

    def compute_batch(self, lm: LoadedModel, batch: BatchEditRequest, on_step: StepFn | None = None) -> Edit:
        """Every fact of ``batch`` at once: one pair of targets per fact, then per layer and
        module one least-squares update for every fact's key (MEMIT's mass edit)."""
        return self._compute(lm, batch, on_step)

    def _compute(self, lm: LoadedModel, request: EditRequest | BatchEditRequest, on_step: StepFn | None) -> Edit:
        start = time.perf_counter()
        cfg = resolve(self.config, self.name, lm)
        layers = list(cfg.layers)
        check_layers(layers, lm, "PmetConfig.layers")
        last = layers[-1]
        kinds: list[ModuleKind] = ["down_proj", "attn_out"] if cfg.rewrite_attention else ["down_proj"]
        at_last = {kind: module_name(lm, kind, last) for kind in ("down_proj", "attn_out")}
        requests = request.requests
        count = len(requests)
        weight_deltas: dict[str, torch.Tensor] = {}
        trace: list[dict[str, float]] = []
        with lm.lock:
            prefixes = context_prefixes(lm, request.source_language, cfg.context_templates, cfg.context_length, cfg.seed)
            rows = [build_rows(lm, single, prefixes) for single in requests]
            targets, delta_norms = [], []  # per fact
            for index, (single, fact_rows) in enumerate(zip(requests, rows)):
                seen = capture(lm, fact_rows, outputs=list(at_last.values()))
                initial = {name: seen.outputs[name][0] for name in at_last.values()}
                deltas, fact_steps = optimise_values(
                    lm, fact_rows, initial, cfg, fact_step(on_step, index, count), "PMET", true_answer_rows(lm, single)
                )
                trace += fact_trace(fact_steps, index, count)
                targets.append({kind: initial[name] + deltas[name] for kind, name in at_last.items()})
                delta_norms.append({kind: float(deltas[name].norm()) for kind, name in at_last.items()})
            stats = LayerStats(lm, cfg.stats)
            for kind in kinds:
                stats.second_moments(layers, kind)  # one pass per module kind for the whole range
            temporary = TemporaryWeights(lm)
            try:
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
                        delta = to_weight_layout(lm, update.to(lm.device))
                        finite_or_raise({f"{name}.weight": delta}, trace, "PMET")
                        weight_deltas[f"{name}.weight"] = delta
                        temporary.add(f"{name}.weight", delta)
            finally:
                temporary.restore()
        details = {
            "layers": layers,
            "prefixes": prefixes,
            "delta_norms": {kind: max(norms[kind] for norms in delta_norms) for kind in at_last},
        }
        if count > 1:
            details["delta_norms_per_fact"] = delta_norms
        return Edit.for_request(
            self.name, request, start,
            weight_deltas=weight_deltas,
            trace=trace,
            config=asdict(cfg),
            details=details,
        )
