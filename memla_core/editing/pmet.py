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
from dataclasses import asdict, dataclass, field

import torch

from ..models import LoadedModel
from .base import Edit, EditRequest, StepFn
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
    least_squares_update,
    optimise_values,
    to_weight_layout,
    true_answer_rows,
    with_int_layers,
)


@dataclass(frozen=True)
class PmetConfig:
    """PMET hyperparameters; defaults from the authors' GPT-J settings (EasyEdit ``PMET/gpt-j-6B.yaml``)."""

    layers: tuple[int, ...] | None = field(
        default=None,
        metadata={
            "label": "Layers",
            "help": "Layers sharing the update, e.g. 4,5,6; empty = per-architecture range "
            "(hparams.FAMILY_DEFAULTS).",
        },
    )
    mom2_update_weight: float | None = field(
        default=None,
        metadata={
            "label": "Covariance weight λ",
            "help": "λ in (λ·C + k kᵀ)⁻¹ (paper: 15000); empty = per-architecture default.",
        },
    )
    rewrite_attention: bool = field(
        default=False,
        metadata={
            "label": "Rewrite attention too",
            "help": "Also write the attention output projection (see the module doc).",
        },
    )
    v_lr: float = field(
        default=0.2,
        metadata={
            "label": "Learning rate of δ",
            "help": "Adam learning rate of the value offset δ (paper: 0.2).",
        },
    )
    v_steps: int = field(
        default=30, metadata={"label": "Steps of δ", "help": "Optimisation steps of δ at most (paper: 30)."},
    )
    v_weight_decay: float = field(
        default=0.5, metadata={"help": "Weight of ‖δ‖ / ‖v‖² in the loss (paper: 0.5)."},
    )
    kl_factor: float = field(
        default=1.0, metadata={"help": "Weight of KL(after-subject distribution, edited ‖ original) (paper: 1.0)."},
    )
    clamp_norm_factor: float = field(default=0.75, metadata={"help": "‖δ‖ ≤ this · ‖v‖ (paper: 0.75)."})
    stop_loss: float = field(default=5e-2, metadata={"help": "Stop optimising δ below this loss."})
    context_templates: int = field(
        default=5, metadata={"help": "Generated prefixes besides the bare prompt (MEMIT: 5)."},
    )
    context_length: int = field(default=10, metadata={"help": "Tokens of each generated prefix (MEMIT: 10)."})
    seed: int = field(default=0, metadata={"help": "Seed of the sampled prefixes."})
    stats: StatsConfig = field(
        default_factory=StatsConfig,
        metadata={
            "label": "Key statistics",
            "help": "How the key covariance C is estimated from self-generated text.",
        },
    )

    def __post_init__(self) -> None:
        check_layer_range(self)


class PmetEditor:
    name = "pmet"

    def __init__(self, config: PmetConfig | None = None):
        self.config = with_int_layers(config or PmetConfig())

    def compute(self, lm: LoadedModel, request: EditRequest, on_step: StepFn | None = None) -> Edit:
        start = time.perf_counter()
        cfg = resolve(self.config, self.name, lm)
        layers = list(cfg.layers)
        check_layers(layers, lm, "PmetConfig.layers")
        last = layers[-1]
        kinds: list[ModuleKind] = ["down_proj", "attn_out"] if cfg.rewrite_attention else ["down_proj"]
        at_last = {kind: module_name(lm, kind, last) for kind in ("down_proj", "attn_out")}
        weight_deltas: dict[str, torch.Tensor] = {}
        with lm.lock:
            prefixes = context_prefixes(lm, request.source_language, cfg.context_templates, cfg.context_length, cfg.seed)
            rows = build_rows(lm, request, prefixes)
            seen = capture(lm, rows, outputs=list(at_last.values()))
            initial = {name: seen.outputs[name][0] for name in at_last.values()}
            deltas, trace = optimise_values(lm, rows, initial, cfg, on_step, "PMET", true_answer_rows(lm, request))
            targets = {kind: initial[name] + deltas[name] for kind, name in at_last.items()}
            stats = LayerStats(lm, cfg.stats)
            for kind in kinds:
                stats.second_moments(layers, kind)  # one pass per module kind for the whole range
            temporary = TemporaryWeights(lm)
            try:
                for i, layer in enumerate(layers):
                    for kind in kinds:
                        name = module_name(lm, kind, layer)
                        now = capture(lm, rows, inputs=[name], outputs=[at_last[kind]])
                        key = now.inputs[name][: rows.n_rewrite].mean(0)
                        residual = (targets[kind] - now.outputs[at_last[kind]][0]) / math.sqrt(len(layers) - i)
                        cov = stats.regularised(layer, kind)
                        update = least_squares_update(key, residual, cov, cfg.mom2_update_weight)
                        delta = to_weight_layout(lm, update.to(lm.device))
                        finite_or_raise({f"{name}.weight": delta}, trace, "PMET")
                        weight_deltas[f"{name}.weight"] = delta
                        temporary.add(f"{name}.weight", delta)
            finally:
                temporary.restore()
        return Edit.for_request(
            self.name, request, start,
            weight_deltas=weight_deltas,
            trace=trace,
            config=asdict(cfg),
            details={
                "layers": layers,
                "prefixes": prefixes,
                "delta_norms": {kind: float(deltas[name].norm()) for kind, name in at_last.items()},
            },
        )
