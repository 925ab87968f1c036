"""MEMLA: neuron-masked LoRA on the MLP down projections (docs/method.md §2, paper §4.2).

LSE and LIE on the same layer are stored as one peft LoRA adapter whose rank is r_S + r_I:
[B_S B_I]·[A_S; A_I] = B_S·A_S + B_I·A_I, so the first r_S rows of A carry the language-specific
mask and the remaining r_I rows the language-independent one. Masking columns of A equals
masking ΔW (``(B A) ∘ M = B (A ∘ M_cols)``); masked-out entries start at zero and receive no
gradient, so they stay exactly zero.
"""

from __future__ import annotations

import copy
import logging
import math
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Literal

import torch
from peft import LoraConfig, get_peft_model, get_peft_model_state_dict
from peft.tuners.lora import LoraLayer

from ..fields import described
from ..models import LoadedModel
from ..neurons import NeuronConfig, NeuronSets, find_neurons
from ..scoring import answer_logprobs, encode_completion
from .base import BatchEditRequest, Edit, EditDivergedError, EditError, EditRequest, StepFn
from .batch import mean
from .locality import locality_reference

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MemlaConfig:
    """MEMLA hyperparameters; defaults are the authors' (docs/method.md §2)."""

    rank_multiplier: int = described(
        1,
        "n: an editor's LoRA rank in a layer is n × its neurons there (paper: 1; 4 for Llama-3-8B).",
        label="Rank multiplier n",
    )
    lr: float = described(1e-3, "Adam learning rate of the LoRA editors (paper: 0.001).", label="Learning rate")
    max_steps: int = described(60, "Optimisation stops here at the latest (paper: 60).", label="Max steps")
    stop_loss: float = described(0.01, "Early stop once the loss falls below this.", label="Stop when loss <")
    stop_p_new: float = described(0.96, "Early stop once the new answer is this likely.", label="Stop when P(new) >")
    weight_new: float = described(
        2.5, "loss = w_new·NLL(new) + w_true·P(true) (authors' code: 2.5).", label="Weight of NLL(new)"
    )
    weight_true: float = described(
        2.0, "loss = w_new·NLL(new) + w_true·P(true) (authors' code: 2.0).", label="Weight of P(true)"
    )
    coefficient: float = described(0.5, "c in W ← W + c·(ΔW_S + ΔW_I) (authors' code: 0.5).", label="Coefficient c")
    use_lse: bool = described(True, "Off = ablation “w/o LSE”.", label="Use the language-specific editor (LSE)")
    use_lie: bool = described(True, "Off = ablation “w/o LIE”.", label="Use the language-independent editor (LIE)")
    mask_lse: bool = described(
        True,
        "Off = ablation “w/o LSM”: LSE may change every neuron of its layers.",
        label="Mask the LSE to its neurons (LSM)",
    )
    mask_lie: bool = described(
        True,
        "Off = ablation “w/o LIM”: LIE may change every neuron of its layers.",
        label="Mask the LIE to its neurons (LIM)",
    )
    seed: int = described(0, "Random initialisation of the LoRA A matrices.", label="Seed")
    lora_zero_factor: Literal["B", "A"] = described(
        "B",
        "B: B = 0, A ~ N(0, 1) (peft's convention, memla's default); A: A = 0, B ~ N(0, 1). "
        "Either way the edit starts as a no-op; docs/implementation.md, 'Reproducing the authors'.",
        label="LoRA factor that starts at zero",
    )
    scale_in_training: bool = described(
        True,
        "On: c scales the update while training, so training sees the update that is applied "
        "(memla's default). Off: train at scale 1 and apply c·ΔW afterwards, as the released code does.",
        label="Train with c applied",
    )
    locality_weight: float = described(
        0.0,
        "Adds weight × KL(unedited ‖ edited) of next-token distributions on the subject alone and "
        "on ordinary sentences in the source language (never evaluation prompts). 0 = the paper's loss.",
        label="Locality weight",
    )
    neurons: NeuronConfig = described(
        help="Integrated-gradients settings of the knowledge-neuron search.",
        label="Knowledge neurons",
        factory=NeuronConfig,
    )

    def __post_init__(self) -> None:
        if self.rank_multiplier < 1:
            raise ValueError("MemlaConfig.rank_multiplier (n) must be a positive integer.")
        if not (self.use_lse or self.use_lie):
            raise ValueError("MemlaConfig: at least one of use_lse / use_lie must be on.")
        if self.lr <= 0 or self.max_steps < 1:
            raise ValueError("MemlaConfig: lr must be > 0 and max_steps ≥ 1.")
        if self.lora_zero_factor not in ("A", "B"):
            raise ValueError("MemlaConfig.lora_zero_factor must be 'A' or 'B' (the LoRA factor that starts at zero).")
        if not (self.locality_weight >= 0 and math.isfinite(self.locality_weight)):
            raise ValueError("MemlaConfig.locality_weight must be a finite number ≥ 0 (0 = the paper's loss).")

    @classmethod
    def ablation(cls, name: str, **overrides) -> "MemlaConfig":
        """The paper's Table 5 variants: 'MEMLA', 'w/o LSM', 'w/o LSE', 'w/o LIM', 'w/o LIE'."""
        switches = {
            "MEMLA": {}, "w/o LSM": {"mask_lse": False}, "w/o LSE": {"use_lse": False},
            "w/o LIM": {"mask_lie": False}, "w/o LIE": {"use_lie": False},
        }
        if name not in switches:
            raise ValueError(f"Unknown ablation '{name}'; choose one of {', '.join(switches)}.")
        return cls(**{**switches[name], **overrides})


ABLATIONS = ("MEMLA", "w/o LSM", "w/o LSE", "w/o LIM", "w/o LIE")


@dataclass(frozen=True)
class LayerPlan:
    """Rows of the LoRA A matrix for one layer: which neurons each editor may read."""

    layer: int
    specific: tuple[int, ...]  # LSE neurons (empty when LSE is off)
    independent: tuple[int, ...]
    rank_specific: int
    rank_independent: int

    @property
    def rank(self) -> int:
        return self.rank_specific + self.rank_independent


def plan_layers(neurons: NeuronSets, config: MemlaConfig) -> list[LayerPlan]:
    specific = NeuronSets.by_layer(neurons.language_specific) if config.use_lse else {}
    independent = NeuronSets.by_layer(neurons.language_independent) if config.use_lie else {}
    n = config.rank_multiplier
    return [
        LayerPlan(
            layer,
            tuple(specific.get(layer, ())),
            tuple(independent.get(layer, ())),
            n * len(specific.get(layer, ())),
            n * len(independent.get(layer, ())),
        )
        for layer in sorted(set(specific) | set(independent))
    ]


def row_mask(plan: LayerPlan, width: int, config: MemlaConfig) -> torch.Tensor:
    """[rank, width] 0/1 mask over the columns of A (the down projection's input neurons)."""
    mask = torch.zeros(plan.rank, width)
    for rows, neurons, masked in (
        (slice(0, plan.rank_specific), plan.specific, config.mask_lse),
        (slice(plan.rank_specific, plan.rank), plan.independent, config.mask_lie),
    ):
        if masked:
            mask[rows, list(neurons)] = 1.0
        else:
            mask[rows] = 1.0
    return mask


def union_of_neurons(sets: list[NeuronSets], fact_id: str) -> NeuronSets:
    """The neurons of a batch: every fact's language-independent neurons, and every fact's
    language-specific ones that are no fact's language-independent neuron (the two sets stay
    disjoint, as for one fact). One set is returned as it is."""
    if len(sets) == 1:
        return sets[0]
    independent = frozenset().union(*(s.language_independent for s in sets))
    specific = frozenset().union(*(s.language_specific for s in sets)) - independent
    per_language: dict[str, frozenset] = {}
    for s in sets:
        for lang, found in s.per_language.items():
            per_language[lang] = per_language.get(lang, frozenset()) | found
    return NeuronSets(
        fact_id, sets[0].source_language, per_language, independent, specific,
        attributions=tuple(a for s in sets for a in s.attributions), config=sets[0].config,
    )


class MemlaEditor:
    name = "memla"

    def __init__(self, config: MemlaConfig = MemlaConfig(), neurons: NeuronSets | None = None):
        self.config = config
        # Precomputed sets (the app and the bench runner reuse them): of the request's fact, of
        # one fact of a batch, or of a whole batch (``union_of_neurons``, fact_id = the batch's).
        self.neurons = neurons

    def compute(self, lm: LoadedModel, request: EditRequest, on_step: StepFn | None = None) -> Edit:
        return self._compute(lm, request, on_step)

    def compute_batch(self, lm: LoadedModel, batch: BatchEditRequest, on_step: StepFn | None = None) -> Edit:
        """Every fact of ``batch`` at once: LoRA editors on the union of the facts' neurons,
        trained on the mean of the facts' losses."""
        return self._compute(lm, batch, on_step)

    def _neurons(self, lm: LoadedModel, request: EditRequest | BatchEditRequest) -> NeuronSets:
        def known(fact_id: str) -> bool:
            n = self.neurons
            return n is not None and n.fact_id == fact_id and n.source_language == request.source_language

        if known(request.fact_id):
            return self.neurons
        sets = [
            self.neurons if known(r.fact_id) else find_neurons(lm, r.fact, r.source_language, self.config.neurons)
            for r in request.requests
        ]
        return union_of_neurons(sets, request.fact_id)

    def _compute(self, lm: LoadedModel, request: EditRequest | BatchEditRequest, on_step: StepFn | None) -> Edit:
        start = time.perf_counter()
        cfg = self.config
        neurons = self._neurons(lm, request)
        plans = plan_layers(neurons, cfg)
        if not plans:
            raise EditError(
                f"No knowledge neurons to edit for fact '{request.fact_id}' "
                f"({request.source_language}): lower NeuronConfig.threshold or enable the other editor."
            )
        lang = request.source_language
        prompts = [r.prompt for r in request.requests]
        news = [encode_completion(lm, e.filled(), e.target_new, lang) for e in prompts]
        trues = [encode_completion(lm, e.filled(), e.target_true, lang) if e.target_true else None for e in prompts]
        with lm.lock:
            locality = locality_reference(lm, request, cfg) if cfg.locality_weight > 0 else None
            trace, deltas, lora_state, lora_config = self._train(lm, plans, news, trues, on_step, locality)
        return Edit.for_request(
            self.name, request, start,
            weight_deltas=deltas,
            trace=trace,
            config=asdict(cfg),
            details={
                "neurons": neurons,
                "layers": [asdict(p) for p in plans],
                "lora_state": lora_state,
                "lora_config": lora_config,
            },
        )

    def _train(self, lm, plans, news, trues, on_step, locality=None):
        """``news[i]``, ``trues[i]``: fact i's new and true answers (``None`` without a true one)."""
        cfg = self.config
        names = {lm.adapter.down_proj_name(p.layer): p for p in plans}
        # LoRA scaling = alpha / r. With scale_in_training it is c, so training sees exactly the
        # update that will be applied; without, training runs at 1 and c·ΔW is applied (authors).
        train_scale = cfg.coefficient if cfg.scale_in_training else 1.0
        lora_config = LoraConfig(
            r=max(p.rank for p in plans),
            lora_alpha=train_scale * max(p.rank for p in plans),
            target_modules=list(names),
            rank_pattern={name: p.rank for name, p in names.items()},
            alpha_pattern={name: train_scale * p.rank for name, p in names.items()},
            lora_dropout=0.0,
            bias="none",
            fan_in_fan_out=lm.adapter.weight_layout == "in_out",
        )
        model = lm.model
        with warnings.catch_warnings():  # peft asks transformers a deprecated question; not ours to fix
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            peft_model = get_peft_model(model, lora_config)
        try:
            generator = torch.Generator().manual_seed(cfg.seed)
            params = []
            for name, plan in names.items():
                layer = peft_model.base_model.model.get_submodule(name)
                assert isinstance(layer, LoraLayer)
                lora_a = layer.lora_A["default"].weight
                lora_b = layer.lora_B["default"].weight
                mask = row_mask(plan, lora_a.shape[1], cfg).to(lora_a.device, lora_a.dtype)
                with torch.no_grad():
                    # One factor random, the other zero, so the edit starts as a no-op.
                    if cfg.lora_zero_factor == "B":
                        lora_a.copy_(torch.randn(lora_a.shape, generator=generator).to(lora_a) * mask)
                        lora_b.zero_()
                    else:
                        lora_a.zero_()
                        lora_b.copy_(torch.randn(lora_b.shape, generator=generator).to(lora_b))
                lora_a.register_hook(lambda grad, mask=mask: grad * mask)
                params += [lora_a, lora_b]
            optimiser = torch.optim.Adam(params, lr=cfg.lr)
            trace: list[dict[str, float]] = []
            items = [*news, *(t for t in trues if t is not None)]
            for step in range(cfg.max_steps + 1):
                logprobs = answer_logprobs(lm, items, grad=True)
                true_logprobs = iter(logprobs[len(news) :])
                losses, p_news, p_trues = [], [], []
                for new_logprobs, true in zip(logprobs, trues):
                    nll_new = -new_logprobs.sum()
                    p_true = next(true_logprobs).sum().exp() if true is not None else torch.zeros(())
                    losses.append(cfg.weight_new * nll_new + cfg.weight_true * p_true)
                    p_news.append(torch.exp(-nll_new).item())
                    if true is not None:
                        p_trues.append(p_true.item())
                loss = losses[0] if len(losses) == 1 else torch.stack(losses).mean()
                record = {
                    "step": step,
                    "loss": loss.item(),
                    "p_new": mean(p_news),
                    "p_true": mean(p_trues) if p_trues else math.nan,
                }
                if len(news) > 1:
                    record["p_new_min"] = min(p_news)
                if locality is not None:
                    kl = locality.kl(lm)
                    loss = loss + cfg.locality_weight * kl
                    record["loss"], record["locality_kl"] = loss.item(), kl.item()
                trace.append(record)
                if on_step:
                    on_step(record)
                if not torch.isfinite(loss):
                    raise EditDivergedError(f"MEMLA loss became {record['loss']} at step {step}; edit rolled back.", trace)
                if loss.item() < cfg.stop_loss or min(p_news) > cfg.stop_p_new or step == cfg.max_steps:
                    break
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
            deltas = {}
            apply_scale = cfg.coefficient / train_scale  # 1 when c was applied in training
            for name in names:
                layer = peft_model.base_model.model.get_submodule(name)
                delta = layer.get_delta_weight("default").detach().clone()
                deltas[f"{name}.base_layer.weight"] = delta if apply_scale == 1 else delta * apply_scale
            state = {k: v.detach().clone() for k, v in get_peft_model_state_dict(peft_model).items()}
            if apply_scale != 1:  # the exported adapter must carry the update that is applied
                lora_config = copy.deepcopy(lora_config)
                lora_config.lora_alpha = cfg.coefficient * lora_config.r
                lora_config.alpha_pattern = {name: cfg.coefficient * p.rank for name, p in names.items()}
        finally:
            peft_model.unload()  # puts the original modules back; base weights were frozen
        for param in model.parameters():
            param.requires_grad_(False)
        deltas = {key.replace(".base_layer.weight", ".weight"): value for key, value in deltas.items()}
        return trace, deltas, state, lora_config
