"""MEND: a learned hypernetwork turns the edit prompt's gradient into a weight update
(Mitchell et al. 2022, "Fast Model Editing at Scale").

An edit is one forward/backward pass: the NLL of ``target_new`` after the edit prompt is
differentiated with respect to the *outputs* of the edited MLP projections, which gives the
rank-1 factors (u_t, δ_t) of each weight's gradient at every token (``rank_one_factors``);
the trained ``MendHypernetwork`` maps them to ΔW = −η Σ_t δ̃_t ũ_tᵀ. Nothing is optimised at
edit time, so MEND is as fast as one backward pass, but it needs a hypernetwork trained for the
model first (``memla train-mend``, see ``mend_training``); it is stored under
``cache_dir()/mend/<model key>/``.

Which weights: MEND edits the MLPs of the last three blocks, both projections (the paper's
GPT-2/GPT-J/T5 settings: ``c_fc`` and ``c_proj`` of layers 45–47 of GPT-2 XL); the layers per
architecture family are data in ``hparams.FAMILY_DEFAULTS``.
"""

from __future__ import annotations

import logging
import math
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Literal, Mapping, Sequence

import torch
import torch.nn.functional as F

from ..fields import converted, described, optional
from ..hooks import as_rows as rows_view
from .. import hooks
from ..models import LoadedModel
from ..paths import cache_dir
from ..scoring import Completion, answer_logprobs, encode_completion, project_to_logits, right_padded
from .base import ConfiguredEditor, EditError, EditRequest, StepFn, WeightEdit
from .mend_net import MendHypernetwork
from .locate import check_layers, layout_deltas

log = logging.getLogger(__name__)

MendModule = Literal["up_proj", "down_proj"]
CHECKPOINT_FORMAT = 1
HYPERNETWORK_FILE = "hypernetwork.pt"
TRAINING_FILE = "training_state.pt"


@converted(layers=optional(lambda layers: tuple(int(l) for l in layers)), modules=tuple)
@dataclass(frozen=True)
class MendConfig:
    """Which weights MEND edits; the trained checkpoint must have been trained for the same ones
    (the editor networks' own shape, e.g. their rank, is a training choice: ``MendTrainConfig``)."""

    layers: tuple[int, ...] | None = described(
        None, "Edited blocks; None: the last few, per family (hparams.FAMILY_DEFAULTS)."
    )
    modules: tuple[MendModule, ...] = described(
        ("up_proj", "down_proj"), "MLP projections edited in each block (MEND: both)."
    )
    checkpoint: str = described("", "Folder of the trained hypernetwork; empty: cache_dir()/mend/<model key>/.")

    def __post_init__(self) -> None:
        bad = [m for m in self.modules if m not in ("up_proj", "down_proj")]
        if bad or not self.modules:
            raise ValueError(f"MendConfig.modules={list(self.modules)}: choose from up_proj, down_proj.")

    def architecture(self) -> dict:
        """The fields a checkpoint must agree on."""
        return {"layers": list(self.layers or ()), "modules": list(self.modules)}


# --------------------------------------------------------------------------- edited weights


@dataclass(frozen=True)
class EditedWeight:
    module: str  # module path, e.g. model.layers.17.mlp.down_proj
    d_in: int
    d_out: int

    @property
    def parameter(self) -> str:
        return f"{self.module}.weight"


def edited_weights(lm: LoadedModel, cfg: MendConfig) -> list[EditedWeight]:
    check_layers(list(cfg.layers or ()), lm, "MendConfig.layers")
    found = []
    for layer in cfg.layers:
        for kind in cfg.modules:
            name = lm.adapter.down_proj_name(layer) if kind == "down_proj" else lm.adapter.up_proj_name(layer)
            weight = lm.model.get_parameter(f"{name}.weight")
            d_out, d_in = weight.shape if lm.adapter.weight_layout == "out_in" else weight.shape[::-1]
            found.append(EditedWeight(name, int(d_in), int(d_out)))
    return found


def build_hypernetwork(weights: Sequence[EditedWeight], rank: int, n_hidden: int, edit_lr: float) -> MendHypernetwork:
    return MendHypernetwork([(w.module, w.d_in, w.d_out) for w in weights], rank, n_hidden, edit_lr)


# --------------------------------------------------------------------------- batches and losses


@dataclass(frozen=True)
class AnswerBatch:
    """Completions laid out for teacher forcing (prompt + answer[:-1], right-padded), with the
    (row, column) that predicts each answer token."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    rows: torch.Tensor
    cols: torch.Tensor
    targets: torch.Tensor
    owners: list[int]
    size: int


def answer_batch(lm: LoadedModel, items: Sequence[Completion]) -> AnswerBatch:
    seqs = [list(it.prompt_ids) + list(it.answer_ids[:-1]) for it in items]
    return _padded(lm, seqs, items)


def _padded(lm: LoadedModel, seqs: Sequence[Sequence[int]], items: Sequence[Completion] = ()) -> AnswerBatch:
    device = lm.device
    input_ids, mask = right_padded(lm, seqs)
    rows, cols, targets, owners = [], [], [], []
    for r, it in enumerate(items):
        for k, target in enumerate(it.answer_ids):
            rows.append(r)
            cols.append(len(it.prompt_ids) - 1 + k)
            targets.append(target)
            owners.append(r)
    as_tensor = lambda v: torch.tensor(v, dtype=torch.long, device=device)  # noqa: E731
    return AnswerBatch(input_ids, mask, as_tensor(rows), as_tensor(cols), as_tensor(targets), owners, len(seqs))


def token_batch(lm: LoadedModel, sequences: Sequence[Sequence[int]]) -> AnswerBatch:
    """Plain texts (locality): no answer positions."""
    return _padded(lm, sequences)


def forward_hidden(lm: LoadedModel, batch: AnswerBatch) -> torch.Tensor:
    return lm.model.base_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state


def answer_nll(lm: LoadedModel, batch: AnswerBatch, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean over rows of each row's mean answer-token NLL, per-row summed log-probability)."""
    picked = hidden[batch.rows, batch.cols]
    logprobs = torch.log_softmax(project_to_logits(lm, picked).float(), dim=-1)
    chosen = logprobs.gather(1, batch.targets[:, None])[:, 0]
    owners = torch.tensor(batch.owners, device=chosen.device)
    counts = torch.zeros(batch.size, device=chosen.device).index_add_(0, owners, torch.ones_like(chosen))
    sums = torch.zeros(batch.size, device=chosen.device).index_add(0, owners, chosen)
    return -(sums / counts.clamp_min(1)).mean(), sums.detach()


def locality_kl(pre: torch.Tensor, post: torch.Tensor) -> torch.Tensor:
    """Mean over positions of KL(pre ‖ post), both log-probabilities (MEND's L_loc)."""
    return (pre.exp() * (pre - post)).sum(-1).mean()


# --------------------------------------------------------------------------- gradient factors


Factors = dict[str, tuple[torch.Tensor, torch.Tensor]]
"""module name -> (u [T, d_in], δ [T, d_out]) over the batch's real tokens."""


def rank_one_factors(
    lm: LoadedModel,
    modules: Sequence[str],
    batch: AnswerBatch,
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
) -> tuple[torch.Tensor, Factors]:
    """Run ``batch``, take ``loss_fn(last hidden state)`` and return it with every module's
    inputs u_t and output gradients δ_t = ∂loss/∂out_t; ∇_W loss = Σ_t δ_t u_tᵀ ([out, in]).

    The model's weights keep ``requires_grad=False``: each traced output gets a zero that does
    require grad added, which changes no value but makes the outputs differentiable.
    """

    def differentiable(_name: str, out: torch.Tensor) -> torch.Tensor:
        return out + torch.zeros((), dtype=out.dtype, device=out.device, requires_grad=True)

    with torch.enable_grad(), hooks.trace(
        lm.model, inputs=modules, outputs=modules, rows=batch.size, patch_output=differentiable
    ) as seen:
        loss = loss_fn(forward_hidden(lm, batch))
    grads = torch.autograd.grad(loss, [seen.outputs[name] for name in modules])
    keep = batch.attention_mask.bool()
    factors: Factors = {}
    for name, grad in zip(modules, grads):
        u, delta = seen.inputs[name].detach()[keep], grad[keep]
        nonzero = (delta != 0).any(-1) & (u != 0).any(-1)  # tokens that carry no gradient add nothing (as MEND)
        factors[name] = (u[nonzero].float(), delta[nonzero].float())
    return loss.detach(), factors


@contextmanager
def deltas_added(lm: LoadedModel, updates: Mapping[str, torch.Tensor]) -> Iterator[None]:
    """Each module named in ``updates`` computes with W + ΔW (ΔW as [out, in]), differentiably in ΔW."""
    names = list(updates)
    current: dict[str, hooks.Traced] = {}

    def add(name: str, out: torch.Tensor) -> torch.Tensor:
        return out + F.linear(current["seen"].inputs[name], updates[name].to(out.dtype))

    with hooks.trace(lm.model, inputs=names, outputs=names, patch_output=add) as seen:
        current["seen"] = seen
        yield


# --------------------------------------------------------------------------- checkpoints


def checkpoint_dir(lm: LoadedModel, cfg: MendConfig) -> Path:
    return Path(cfg.checkpoint).expanduser() if cfg.checkpoint else cache_dir() / "mend" / lm.key


class MendNotTrainedError(EditError):
    """No trained hypernetwork for this model (or one trained for other weights)."""


_LOADED: dict[tuple[str, int, str], tuple[dict, MendHypernetwork]] = {}


def load_hypernetwork(lm: LoadedModel, cfg: MendConfig) -> tuple[dict, MendHypernetwork]:
    """The trained hypernetwork of ``lm`` and its checkpoint's metadata (cached per file version)."""
    folder = checkpoint_dir(lm, cfg)
    path = folder / HYPERNETWORK_FILE
    if not path.exists():
        partial = folder / TRAINING_FILE
        hint = (
            f" A training run stopped early is at {partial}; the same command resumes it."
            if partial.exists() else ""
        )
        raise MendNotTrainedError(
            f"MEND needs a hypernetwork trained for {lm.key}, and {path} does not exist. Train it once with "
            f"`memla train-mend --model {lm.spec.name_or_path}` (about 20 min on a laptop CPU for the default "
            f"model).{hint}"
        )
    key = (str(path), path.stat().st_mtime_ns, str(lm.device))
    if key not in _LOADED:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("format") != CHECKPOINT_FORMAT:
            raise MendNotTrainedError(f"{path} has an unknown format; retrain with `memla train-mend --restart`.")
        _LOADED.clear()  # one model's hypernetwork at a time: they can be hundreds of MB
        net = MendHypernetwork(
            [tuple(w) for w in state["weights"]], state["train"]["rank"], state["train"]["n_hidden"], edit_lr=0.0
        )
        net.load_state_dict(state["hypernetwork"])
        net.to(lm.device).eval().requires_grad_(False)
        _LOADED[key] = ({k: v for k, v in state.items() if k != "hypernetwork"}, net)
    meta, net = _LOADED[key]
    if meta["config"] != cfg.architecture():
        raise MendNotTrainedError(
            f"The MEND hypernetwork in {folder} was trained for {meta['config']}, but this edit asks for "
            f"{cfg.architecture()}. Use the checkpoint's settings, or train one for these with "
            "`memla train-mend --restart --set mend.FIELD=VALUE …`."
        )
    return meta, net


# --------------------------------------------------------------------------- editor


def edit_updates(
    lm: LoadedModel, net: MendHypernetwork, weights: Sequence[EditedWeight], items: Sequence[Completion]
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """(edit loss, log P per item, module -> ΔW [out, in]) for the completions ``items``."""
    batch = answer_batch(lm, items)
    sums: list[torch.Tensor] = []

    def loss_fn(hidden: torch.Tensor) -> torch.Tensor:
        loss, row_sums = answer_nll(lm, batch, hidden)
        sums.append(row_sums)
        return loss

    loss, factors = rank_one_factors(lm, [w.module for w in weights], batch, loss_fn)
    return loss, sums[0], net.pseudo_gradients(factors)


class MendEditor(ConfiguredEditor):
    name = "mend"
    config_cls = MendConfig

    def edit_weights(self, lm: LoadedModel, request: EditRequest, cfg: MendConfig, on_step: StepFn | None) -> WeightEdit:
        weights = edited_weights(lm, cfg)
        meta, net = load_hypernetwork(lm, cfg)
        edit = request.prompt
        lang = request.source_language
        new = encode_completion(lm, edit.filled(), edit.target_new, lang)
        true = [encode_completion(lm, edit.filled(), edit.target_true, lang)] if edit.target_true else []
        trace: list[dict[str, float]] = []
        with lm.lock:
            loss, logp_new, updates = edit_updates(lm, net, weights, [new])
            p_true = _p_true(lm, true)
            trace.append({"step": 0, "loss": loss.item(), "p_new": logp_new[0].exp().item(), "p_true": p_true})
            if on_step:
                on_step(trace[-1])
            with torch.no_grad(), deltas_added(lm, updates):
                after = answer_logprobs(lm, [new, *true])
            trace.append({
                "step": 1,
                "loss": -after[0].mean().item(),
                "p_new": after[0].sum().exp().item(),
                "p_true": after[1].sum().exp().item() if true else math.nan,
            })
            if on_step:
                on_step(trace[-1])
        weight_deltas = layout_deltas(lm, {w.module: updates[w.module].detach() for w in weights}, trace, "MEND")
        details = {
            "layers": list(cfg.layers),
            "trained_languages": list(meta.get("languages", [])),
            "checkpoint": str(checkpoint_dir(lm, cfg)),
            "delta_norms": {w.parameter: float(updates[w.module].norm()) for w in weights},
        }
        return weight_deltas, trace, details


def _p_true(lm: LoadedModel, true: Sequence[Completion]) -> float:
    if not true:
        return math.nan
    return answer_logprobs(lm, list(true))[0].sum().exp().item()
