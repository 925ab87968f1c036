"""FT-L: constrained fine-tuning of one MLP down projection (Zhu et al. 2020, "Modifying
Memories in Transformer Models"; the FT-L baseline of ROME, Meng et al. 2022).

The whole output weight of one layer's MLP is trained on the edit prompt to maximise
log P(target_new), with Adam; after every step each entry is clamped back into
[w₀ − ε, w₀ + ε] (the L∞ bound that keeps the change small and is what separates FT-L from
plain fine-tuning). Training stops early once the target is learnt. The weight is changed in
place during training and restored bit for bit in ``finally``; the edit is the difference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..fields import described
from ..models import LoadedModel
from ..scoring import answer_logprobs, encode_completion
from .base import BatchEditRequest, ConfiguredEditor, Edit, EditDivergedError, EditRequest, StepFn, WeightEdit
from .batch import mean
from .locate import check_layers


@dataclass(frozen=True)
class FTConfig:
    """FT-L hyperparameters; paper defaults from ROME's ``FT/gpt2-xl_constr.json`` (25 steps,
    lr 5e-4, ε = 5e-4). ``None`` fields come per architecture from ``hparams.FAMILY_DEFAULTS``."""

    layer: int | None = described(
        None,
        "Layer whose MLP down projection is fine-tuned; empty = per-architecture default (hparams.FAMILY_DEFAULTS).",
        label="Layer",
    )
    lr: float | None = described(
        None, "Adam learning rate (paper: 5e-4); empty = per-architecture default.", label="Learning rate"
    )
    norm_constraint: float | None = described(
        None,
        "ε of the L∞ bound: every weight stays within ±ε of its original value (paper: 5e-4); inf = "
        "unconstrained fine-tuning; empty = per-architecture default.",
        label="L∞ bound ε",
    )
    steps: int = described(25, "Optimisation steps at most (paper: 25).", label="Max steps")
    stop_loss: float = described(
        1e-2, "Stop when the mean NLL of the new answer falls below this …", label="Stop when loss <"
    )
    stop_p_new: float = described(0.96, "… or when P(new) exceeds this (as MEMLA).", label="Stop when P(new) >")

    def __post_init__(self) -> None:
        if self.lr is not None and not self.lr > 0:
            raise ValueError("FTConfig.lr must be > 0 (the paper uses 5e-4).")
        if self.norm_constraint is not None and not self.norm_constraint > 0:
            raise ValueError("FTConfig.norm_constraint (ε) must be > 0; use math.inf for unconstrained fine-tuning.")
        if self.steps < 1:
            raise ValueError("FTConfig.steps must be ≥ 1.")


class FTEditor(ConfiguredEditor):
    name = "ft"
    config_cls = FTConfig

    def compute_batch(self, lm: LoadedModel, batch: BatchEditRequest, on_step: StepFn | None = None) -> Edit:
        """Every fact of ``batch`` at once: the loss is the mean of the facts' losses."""
        return self.compute(lm, batch, on_step)

    def edit_weights(
        self, lm: LoadedModel, request: EditRequest | BatchEditRequest, cfg: FTConfig, on_step: StepFn | None
    ) -> WeightEdit:
        check_layers([cfg.layer], lm, "FTConfig.layer")
        lang = request.source_language
        prompts = [r.prompt for r in request.requests]
        k = len(prompts)
        # The new answers first, then the true ones of the facts that have one.
        items = [encode_completion(lm, e.filled(), e.target_new, lang) for e in prompts]
        items += [encode_completion(lm, e.filled(), e.target_true, lang) for e in prompts if e.target_true]
        name = f"{lm.adapter.down_proj_name(cfg.layer)}.weight"
        weight = lm.model.get_parameter(name)
        with lm.lock:
            original = weight.detach().clone()
            trace: list[dict[str, float]] = []
            try:
                weight.requires_grad_(True)
                optimiser = torch.optim.Adam([weight], lr=cfg.lr)
                for step in range(cfg.steps + 1):
                    logprobs = answer_logprobs(lm, items, grad=True)
                    losses = [-lp.mean() for lp in logprobs[:k]]
                    loss = losses[0] if k == 1 else torch.stack(losses).mean()
                    p_new = [lp.sum().exp().item() for lp in logprobs[:k]]
                    p_true = [lp.sum().exp().item() for lp in logprobs[k:]]
                    record = {
                        "step": step,
                        "loss": loss.item(),
                        "p_new": mean(p_new),
                        "p_true": mean(p_true) if p_true else math.nan,
                    }
                    if k > 1:
                        record["p_new_min"] = min(p_new)
                    trace.append(record)
                    if on_step:
                        on_step(record)
                    if not torch.isfinite(loss):
                        raise EditDivergedError(f"FT-L loss became {record['loss']} at step {step}; nothing was applied.", trace)
                    if record["loss"] < cfg.stop_loss or min(p_new) > cfg.stop_p_new or step == cfg.steps:
                        break
                    optimiser.zero_grad()
                    loss.backward()
                    optimiser.step()
                    if math.isfinite(cfg.norm_constraint):
                        with torch.no_grad():
                            weight.copy_(torch.clamp(weight, original - cfg.norm_constraint, original + cfg.norm_constraint))
                delta = (weight.detach() - original).clone()
            finally:
                weight.requires_grad_(False)
                weight.grad = None
                with torch.no_grad():
                    weight.copy_(original)
        if not torch.isfinite(delta).all():
            raise EditDivergedError("FT-L produced a non-finite weight change; nothing was applied. Lower FTConfig.lr.", trace)
        details = {"layer": cfg.layer, "max_abs_change": float(delta.abs().max())}
        return {name: delta}, trace, details
