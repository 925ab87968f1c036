"""MEMIT: the ROME update spread over a range of MLP layers (Meng et al. 2023, "Mass-Editing
Memory in a Transformer").

1. Keys, prefixes and δ as in ROME, with δ optimised at the *last* layer L of the range; the
   target z* is the residual stream (decoder-block output of L) at the subject's last token of
   the bare prompt, with δ in place.
2. For each layer l of the range, first to last, on the weights already updated below it:
   the remaining residual z* − z(L) is divided by the number of layers left, r_l, and written
   into W_l with MEMIT's least-squares update ΔW_l = Δm_l kᵀ (λ·C_l + k kᵀ)⁻¹ (λ =
   ``mom2_update_weight``, k = the key at l averaged over the prefixed prompts).

δ is optimised on the down-projection output of L, not on the block output as in the paper;
for architectures whose MLP output is added straight to the residual stream (GPT-2, LLaMA,
BLOOM, NeoX, OPT …) this is the same thing. Gemma 2/3 normalise the MLP output before adding
it (``post_feedforward_layernorm``), so a residual-stream change r is not an MLP-output change:
Δm_l is found by Newton steps on m ↦ block output, its Jacobian from autograd, within a trust
region (see ``mlp_change_for``); on the other architectures that Jacobian is the identity and
Δm_l = r_l, the paper's update. No architecture names are involved.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from .. import hooks
from ..fields import described
from ..models import LoadedModel
from .base import BatchEditRequest, ConfiguredEditor, Edit, EditRequest, StepFn, WeightEdit
from .layer_stats import LayerStats, StatsConfig
from .locate import (
    EditRows,
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

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MemitConfig:
    """MEMIT hyperparameters; defaults from the authors' ``MEMIT/gpt-j-6B.json`` (Meng et al. 2023)."""

    layers: tuple[int, ...] | None = layers_field()
    mom2_update_weight: float | None = mom2_field()
    v_lr: float = value_field("v_lr", 0.5)
    v_steps: int = value_field("v_steps", 25)
    v_weight_decay: float = value_field("v_weight_decay", 0.5)
    kl_factor: float = value_field("kl_factor", 0.0625)
    clamp_norm_factor: float = value_field(
        "clamp_norm_factor", 0.75, "Tighter than ROME's 4 because δ is shared by several layers."
    )
    stop_loss: float = value_field("stop_loss", 5e-2)
    context_templates: int = value_field("context_templates", 5)
    context_length: int = value_field("context_length", 10)
    newton_steps: int = described(
        4, "Newton steps of the MLP-output solve where the MLP output is normalised (Gemma 2/3); see mlp_change_for."
    )
    mlp_trust_ratio: float = described(3.0, "There, ‖Δm‖ ≤ this · ‖m‖ (1.0 leaves Gemma 3 270M's edit unfinished).")
    seed: int = value_field("seed", 0)
    stats: StatsConfig = value_field("stats", StatsConfig)

    def __post_init__(self) -> None:
        check_layer_range(self)
        if self.newton_steps < 1 or not self.mlp_trust_ratio > 0:
            raise ValueError(f"{type(self).__name__}: newton_steps must be ≥ 1 and mlp_trust_ratio > 0.")


def _block_output_and_jacobian(
    lm: LoadedModel, rows: EditRows, layer: int, extra: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """At the bare prompt's subject token, with ``extra`` added to layer ``layer``'s
    down-projection output m: the block output c, ∂c/∂m and m itself: ([d], [d, d], [d])."""
    ids, mask, pos = rows.input_ids[:1], rows.attention_mask[:1], rows.lookup[0]
    leaf = extra.detach().clone().float().requires_grad_(True)
    down, block = lm.adapter.down_proj_name(layer), lm.adapter.layer_name(layer)
    seen: dict[str, torch.Tensor] = {}

    def add(name: str, out: torch.Tensor) -> torch.Tensor | None:
        if name != down:
            return None
        seen["m"] = out[0, pos].detach().float()
        bump = torch.zeros_like(out).index_put((torch.zeros_like(pos)[None], pos[None]), leaf.to(out.dtype)[None])
        return out + bump

    # Later layers are not needed: the forward pass stops once the block has run.
    with torch.enable_grad(), hooks.trace(lm.model, outputs=[down, block], rows=1, patch_output=add, stop_after=block) as traced:
        lm.model.base_model(input_ids=ids, attention_mask=mask)
    c = traced.outputs[block][0, pos].float()
    eye = torch.eye(c.shape[0], device=c.device, dtype=c.dtype)
    (jacobian,) = torch.autograd.grad(c, leaf, grad_outputs=eye, is_grads_batched=True)
    return c.detach(), jacobian, seen["m"]


def mlp_change_for(
    lm: LoadedModel, rows: EditRows, layer: int, residual: torch.Tensor, steps: int, trust_ratio: float
) -> torch.Tensor:
    """The change Δm of layer ``layer``'s down-projection output (at the bare prompt's subject
    token) that moves its block output by ``residual``: Newton's method on m ↦ block output.

    Where the MLP output is added as it is (∂c/∂m = I) this is Δm = residual, MEMIT exactly.
    Where it is normalised first, the residual may be out of reach (a normalised output can
    turn but not grow), and Newton steps would then grow m without bound; there ‖Δm‖ is capped
    at ``trust_ratio``·‖m‖ and the iterate closest to the target is kept. The part not reached
    stays in z* − z(L) and passes to the next layer of the range.
    """
    change = torch.zeros_like(residual)
    start, jacobian, mlp_out = _block_output_and_jacobian(lm, rows, layer, change)
    eye = torch.eye(jacobian.shape[0], device=jacobian.device, dtype=jacobian.dtype)
    if torch.equal(jacobian, eye):
        return residual.clone()
    target = start + residual
    max_norm = trust_ratio * mlp_out.norm()
    best, best_error = change, residual.norm()
    current = start
    for _ in range(steps):
        step = torch.linalg.pinv(jacobian.double(), rtol=1e-6) @ (target - current).double()
        change = change + step.float()
        if change.norm() > max_norm:
            change = change * (max_norm / change.norm())
        current, jacobian, _ = _block_output_and_jacobian(lm, rows, layer, change)
        error = (target - current).norm()
        if error < best_error:
            best, best_error = change, error
        if error <= 1e-4 * residual.norm():
            break
    return best


class MemitEditor(ConfiguredEditor):
    name = "memit"
    method_label = "MEMIT"
    config_cls = MemitConfig

    def __init__(self, config: MemitConfig | None = None):
        super().__init__(with_int_layers(config or MemitConfig()))

    def compute_batch(self, lm: LoadedModel, batch: BatchEditRequest, on_step: StepFn | None = None) -> Edit:
        """MEMIT's mass edit: one target z* per fact, then per layer one least-squares update
        for every fact's key at once."""
        return self.compute(lm, batch, on_step)

    def edit_weights(
        self, lm: LoadedModel, request: EditRequest | BatchEditRequest, cfg: MemitConfig, on_step: StepFn | None
    ) -> WeightEdit:
        layers = list(cfg.layers)
        check_layers(layers, lm, f"{type(cfg).__name__}.layers")
        last = layers[-1]
        down_last, block_last = lm.adapter.down_proj_name(last), lm.adapter.layer_name(last)
        with lm.lock:
            prefixes, rows = prefixed_rows(lm, request, cfg)
            # The clamp and weight decay are relative to the residual stream at L, as in MEMIT.
            references = [{down_last: capture(lm, r, outputs=[block_last]).outputs[block_last][0]} for r in rows]
            deltas, trace = optimise_each_fact(lm, request, rows, references, cfg, on_step, self.method_label)
            z_targets = [
                capture(lm, r, outputs=[block_last], deltas=d).outputs[block_last][0] for r, d in zip(rows, deltas)
            ]
            delta_norms = [float(d[down_last].norm()) for d in deltas]
            stats = LayerStats(lm, cfg.stats)
            stats.second_moments(layers)  # one pass for every layer of the range
            with TemporaryWeights(lm) as written:
                for i, layer in enumerate(layers):
                    name = lm.adapter.down_proj_name(layer)
                    keys, changes = [], []
                    for fact_rows, z_target in zip(rows, z_targets):
                        now = capture(lm, fact_rows, inputs=[name], outputs=[block_last])
                        keys.append(now.inputs[name][: fact_rows.n_rewrite].mean(0))
                        residual = (z_target - now.outputs[block_last][0]) / (len(layers) - i)
                        changes.append(mlp_change_for(lm, fact_rows, layer, residual, cfg.newton_steps, cfg.mlp_trust_ratio))
                        log.debug("MEMIT layer %d: |residual| %.4g, |Δm| %.4g", layer, residual.norm(), changes[-1].norm())
                    update = least_squares_update(
                        torch.stack(keys), torch.stack(changes), stats.regularised(layer), cfg.mom2_update_weight
                    )
                    written.add(layout_deltas(lm, {name: update}, trace, self.method_label))
        details = {"layers": layers, "prefixes": prefixes, "delta_norm": max(delta_norms)}
        if len(rows) > 1:
            details["delta_norms"] = delta_norms
        return written.deltas, trace, details
