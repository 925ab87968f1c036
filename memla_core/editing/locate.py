"""Locate-and-edit machinery shared by ROME, MEMIT and PMET (Meng et al. 2022, 2023; Li et al. 2024).

These methods read an MLP projection as a key–value memory: its input at the subject's last token
is a key k, its output a value v. What they share, and what lives here:
- **rows**: the edit prompt alone and behind a few short prefixes the model writes itself
  (seeded), with the subject's last token located in each (``build_rows``; ``prefixed_rows``
  for every fact of a request);
- **key capture**: module inputs and outputs at those tokens (``capture``, through ``hooks.trace``);
- **value optimisation**: an additive change δ of module outputs at the subject token, optimised
  for ``target_new`` with a KL term, a weight decay and a norm clamp (ROME's ``compute_v``,
  ``optimise_values``; ``optimise_each_fact`` for a batch);
- **updates**: ROME's rank-one ΔW = δ (C⁻¹k)ᵀ / (kᵀC⁻¹k) and MEMIT's least-squares
  ΔW = Δm kᵀ (λ·C + k kᵀ)⁻¹, both in [out, in], then turned into the parameter's own layout
  and checked to be finite (``layout_deltas``);
- **temporary weights**: MEMIT and PMET write layer after layer and need the earlier layers'
  updates in place while they compute the next; ``TemporaryWeights`` restores them bit for bit.

Prompts without "{}" (imported datasets) mark no subject: its last token is found by its text
when the prompt contains it, otherwise the prompt's last token stands in for it.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F

from ..data.schema import EditPrompt
from .. import hooks
from ..models import LoadedModel
from ..scoring import encode_completion, project_to_logits, right_padded
from .base import BatchEditRequest, EditDivergedError, EditError, EditRequest, StepFn
from .batch import fact_step, fact_trace
from .layer_stats import SEED_PROMPTS, sample_texts

# --------------------------------------------------------------------------- config fields and checks

_VALUE_FIELDS: dict[str, tuple[str, str]] = {
    "v_lr": ("Learning rate of δ", "Adam learning rate of the value offset δ (paper: {default:g})."),
    "v_steps": ("Steps of δ", "Optimisation steps of δ at most (paper: {default:g})."),
    "v_weight_decay": ("", "Weight of ‖δ‖ / ‖v‖² in the loss (paper: {default:g})."),
    "kl_factor": ("", "Weight of KL(after-subject distribution, edited ‖ original) (paper: {default:g})."),
    "clamp_norm_factor": ("", "‖δ‖ ≤ this · ‖v‖ (paper: {default:g})."),
    "stop_loss": ("", "Stop optimising δ below this loss."),
    "context_templates": ("", "Generated prefixes besides the bare prompt (MEMIT: 5 of 10 tokens)."),
    "context_length": ("", "Tokens of each generated prefix (MEMIT: 10)."),
    "seed": ("", "Seed of the sampled prefixes."),
    "stats": ("Key statistics", "How the key covariance C is estimated from self-generated text."),
}
"""Label and help of the fields every value-optimising config has (ROME, MEMIT, PMET)."""


def value_field(name: str, default: Any, note: str = "") -> Any:
    """A config field of the value optimisation, with the label and help the three methods share;
    ``default`` is the method's own (a class for ``stats``), ``note`` is appended to the help."""
    label, text = _VALUE_FIELDS[name]
    metadata = {"help": " ".join(filter(None, [text.format(default=default), note]))}
    if label:
        metadata["label"] = label
    if isinstance(default, type):
        return field(default_factory=default, metadata=metadata)
    return field(default=default, metadata=metadata)


def layers_field() -> Any:
    """``layers`` of a multi-layer config (MEMIT, PMET)."""
    return field(default=None, metadata={
        "label": "Layers",
        "help": "Layers sharing the update, e.g. 4,5,6; empty = per-architecture range (hparams.FAMILY_DEFAULTS).",
    })


def mom2_field() -> Any:
    """``mom2_update_weight`` (λ) of a multi-layer config (MEMIT, PMET)."""
    return field(default=None, metadata={
        "label": "Covariance weight λ",
        "help": "λ in (λ·C + k kᵀ)⁻¹ (paper: 15000); empty = per-architecture default.",
    })



def check_value_fields(cfg) -> None:
    if cfg.v_steps < 0 or cfg.context_templates < 0 or cfg.context_length < 1:
        raise ValueError(f"{type(cfg).__name__}: v_steps and context_templates must be ≥ 0, context_length ≥ 1.")
    if not cfg.v_lr > 0:
        raise ValueError(f"{type(cfg).__name__}.v_lr must be > 0 (the paper uses 0.5).")
    if cfg.clamp_norm_factor <= 0:
        raise ValueError(f"{type(cfg).__name__}.clamp_norm_factor must be > 0 (the paper uses 4).")


def check_layer_range(config) -> None:
    """Shared checks of multi-layer configs (MEMIT, PMET): value fields, layers, λ. Checks only:
    ``with_int_layers`` gives the config with the layers as integers."""
    check_value_fields(config)
    name = type(config).__name__
    if config.layers is not None:
        try:
            layers = [int(l) for l in config.layers]  # forms and the CLI give strings
        except (TypeError, ValueError):
            raise ValueError(f"{name}.layers must be layer numbers such as 4,5,6; got {config.layers}.") from None
        if layers != sorted(set(layers)):
            raise ValueError(f"{name}.layers must be increasing and distinct, got {config.layers}.")
    if config.mom2_update_weight is not None and config.mom2_update_weight < 0:
        raise ValueError(f"{name}.mom2_update_weight (λ) must be ≥ 0.")


def with_int_layers(config):
    """``config`` with ``layers`` as a tuple of ints: a new config where they were given as strings."""
    if config.layers is None:
        return config
    layers = tuple(int(l) for l in config.layers)
    return config if layers == config.layers else replace(config, layers=layers)


# --------------------------------------------------------------------------- prompts and positions


def context_prefixes(lm: LoadedModel, language: str, count: int, length: int, seed: int) -> list[str]:
    """``""`` (the bare prompt) plus ``count`` short texts the model writes from seed words of
    ``language`` (English seeds when the language has none), each ending in ". "."""
    if count == 0:
        return [""]
    seeds = SEED_PROMPTS.get(language, SEED_PROMPTS["en"])
    prompts = [seeds[i % len(seeds)] for i in range(count)]
    # top_k=5 as ROME's generate_fast: short, plausible prefixes rather than noise.
    ids, mask = sample_texts(lm, prompts, length, seed, top_k=5, batch_size=count)
    texts = [lm.tokenizer.decode(row[m.bool()], skip_special_tokens=True) for row, m in zip(ids, mask)]
    return [""] + [t.replace("{", " ").replace("}", " ").strip() + ". " for t in texts]


def prefixed_rows(lm: LoadedModel, request: EditRequest | BatchEditRequest, cfg) -> tuple[list[str], list[EditRows]]:
    """The context prefixes of ``cfg`` (``context_templates`` of ``context_length`` tokens, seeded
    by ``seed``) in the request's source language, and each of its facts laid out behind them."""
    prefixes = context_prefixes(lm, request.source_language, cfg.context_templates, cfg.context_length, cfg.seed)
    return prefixes, [build_rows(lm, single, prefixes) for single in request.requests]


def subject_end(edit: EditPrompt) -> int:
    """Character offset, in ``edit.filled()``, just after the subject (see the module docstring)."""
    if edit.has_placeholder:
        return edit.prompt.index("{}") + len(edit.subject)
    found = edit.prompt.find(edit.subject) if edit.subject else -1
    return found + len(edit.subject) if found >= 0 else len(edit.prompt)


def encode_at(lm: LoadedModel, text: str, end_char: int) -> tuple[list[int], int]:
    """Token ids of ``text`` and the index of the token holding character ``end_char - 1``."""
    tok = lm.tokenizer
    try:
        enc = tok(text, return_offsets_mapping=True)
        offsets = enc["offset_mapping"]
    except (NotImplementedError, KeyError):  # slow tokenizers have no offsets
        ids = tok(text)["input_ids"]
        return ids, max(0, min(len(ids), len(tok(text[:end_char])["input_ids"])) - 1)
    ids = enc["input_ids"]
    inside = [i for i, (start, end) in enumerate(offsets) if end > start and start < end_char]
    return ids, inside[-1] if inside else len(ids) - 1


@dataclass(frozen=True)
class EditRows:
    """One request laid out for the model: ``n_rewrite`` rows prefix + prompt + answer[:-1]
    (row 0 is the bare prompt), then at most one KL row (the subject alone); right-padded."""

    input_ids: torch.Tensor  # [rows, width]
    attention_mask: torch.Tensor
    lookup: torch.Tensor  # [rows] index of the subject's last token
    n_rewrite: int
    answer_ids: tuple[int, ...]
    answer_cols: torch.Tensor  # [n_rewrite, answer_len] positions that predict answer tokens

    @property
    def has_kl(self) -> bool:
        return self.input_ids.shape[0] > self.n_rewrite

    @property
    def size(self) -> int:
        return self.input_ids.shape[0]


def build_rows(
    lm: LoadedModel, request: EditRequest, prefixes: Sequence[str], answer_text: str | None = None, kl: bool = True
) -> EditRows:
    """``answer_text`` defaults to ``target_new``; ``kl=False`` leaves the KL row out."""
    edit = request.prompt
    filled = edit.filled()
    answer_text = edit.target_new if answer_text is None else answer_text
    answer = encode_completion(lm, filled, answer_text, request.source_language).answer_ids
    end = subject_end(edit)
    seqs, lookups, cols = [], [], []
    for prefix in prefixes:
        ids, pos = encode_at(lm, prefix + filled, len(prefix) + end)
        seqs.append(ids + list(answer[:-1]))
        lookups.append(pos)
        cols.append([len(ids) - 1 + k for k in range(len(answer))])
    subject_ids = lm.tokenizer(edit.subject)["input_ids"] if kl and edit.subject.strip() else []
    if subject_ids:
        seqs.append(subject_ids)
        lookups.append(len(subject_ids) - 1)
    device = lm.device
    input_ids, mask = right_padded(lm, seqs)
    return EditRows(
        input_ids, mask, torch.tensor(lookups, device=device), len(prefixes), tuple(answer),
        torch.tensor(cols, device=device),
    )

# --------------------------------------------------------------------------- hooks


def _add_at_subject(rows: EditRows, deltas: Mapping[str, torch.Tensor]):
    """A ``hooks.Patch`` that adds ``deltas[name]`` to module ``name``'s output at every row's subject token."""
    row_idx = torch.arange(rows.size, device=rows.lookup.device)

    def patch(name: str, out: torch.Tensor) -> torch.Tensor | None:
        if name not in deltas:
            return None
        add = torch.zeros_like(out).index_put((row_idx, rows.lookup), deltas[name].to(out.dtype).expand(rows.size, -1))
        return out + add

    return patch


@contextmanager
def add_at_lookup(lm: LoadedModel, rows: EditRows, deltas: Mapping[str, torch.Tensor]) -> Iterator[None]:
    """Add ``deltas[name]`` to the output of module ``name`` at every row's subject token."""
    with hooks.trace(lm.model, outputs=list(deltas), rows=rows.size, patch_output=_add_at_subject(rows, deltas)):
        yield


def capture(
    lm: LoadedModel,
    rows: EditRows,
    inputs: Sequence[str] = (),
    outputs: Sequence[str] = (),
    deltas: Mapping[str, torch.Tensor] | None = None,
) -> hooks.Traced:
    """Inputs and outputs of the named modules at every row's subject token ([rows, d] float32,
    no gradient), with ``deltas`` added to module outputs there. A decoder block
    (``adapter.layer_name(l)``) gives its hidden states."""
    deltas = deltas or {}
    row_idx = torch.arange(rows.size, device=lm.device)
    hooked = list(dict.fromkeys([*outputs, *deltas]))
    with torch.no_grad(), hooks.trace(
        lm.model, inputs, hooked, rows=rows.size, patch_output=_add_at_subject(rows, deltas)
    ) as seen:
        lm.model.base_model(input_ids=rows.input_ids, attention_mask=rows.attention_mask)

    def pick(tensor: torch.Tensor) -> torch.Tensor:
        return tensor[row_idx, rows.lookup].detach().float()

    return hooks.Traced({n: pick(seen.inputs[n]) for n in inputs}, {n: pick(seen.outputs[n]) for n in outputs})


# --------------------------------------------------------------------------- value optimisation


def true_answer_rows(lm: LoadedModel, request: EditRequest) -> EditRows | None:
    """The bare prompt followed by ``target_true`` (None without one): how the optimisation's trace
    reads P(true) under the current δ."""
    true = request.prompt.target_true
    return build_rows(lm, request, [""], answer_text=true, kl=False) if true else None


def answer_probability(lm: LoadedModel, rows: EditRows, deltas: Mapping[str, torch.Tensor]) -> float:
    """P(answer | bare prompt) of row 0 with ``deltas`` added at the subject token; no gradient."""
    with torch.no_grad(), add_at_lookup(lm, rows, deltas):
        hidden = lm.model.base_model(input_ids=rows.input_ids, attention_mask=rows.attention_mask).last_hidden_state
        logprobs = torch.log_softmax(project_to_logits(lm, hidden[0, rows.answer_cols[0]]).float(), dim=-1)
        ids = torch.tensor(rows.answer_ids, device=lm.device)
        return logprobs.gather(1, ids[:, None]).sum().exp().item()


def optimise_values(
    lm: LoadedModel,
    rows: EditRows,
    reference: Mapping[str, torch.Tensor],
    cfg,
    on_step: StepFn | None = None,
    method: str = "ROME",
    true_rows: EditRows | None = None,
) -> tuple[dict[str, torch.Tensor], list[dict[str, float]]]:
    """ROME's compute_v: one additive change δ per module named in ``reference``, added to the
    module's output at every row's subject token and optimised for ``target_new``.

    ``reference[name]`` is the vector whose norm scales the clamp and the weight decay (ROME,
    PMET: the module's output v at the bare prompt; MEMIT: the residual stream). ``cfg``
    supplies v_lr, v_steps, v_weight_decay, kl_factor, clamp_norm_factor and stop_loss.
    ``true_rows`` (``true_answer_rows``) adds P(true) to the trace: one extra forward per step,
    without gradient, that leaves δ's optimisation as it is.
    """
    deltas = {name: torch.zeros_like(v, requires_grad=True) for name, v in reference.items()}
    optimiser = torch.optim.Adam(list(deltas.values()), lr=cfg.v_lr)
    n, width = rows.n_rewrite, len(rows.answer_ids)
    answer_rows = torch.arange(n, device=lm.device).repeat_interleave(width)
    targets = torch.tensor(rows.answer_ids, device=lm.device).repeat(n)
    kl_initial = None
    trace: list[dict[str, float]] = []
    for step in range(cfg.v_steps + 1):
        # Hooks per step, not around the loop: the P(true) probe runs other rows through the model.
        with add_at_lookup(lm, rows, deltas), torch.enable_grad():
            hidden = lm.model.base_model(input_ids=rows.input_ids, attention_mask=rows.attention_mask).last_hidden_state
            picked = hidden[answer_rows, rows.answer_cols.reshape(-1)]
            logprobs = torch.log_softmax(project_to_logits(lm, picked).float(), dim=-1)
            token_lp = logprobs.gather(1, targets[:, None]).reshape(n, width)
            loss = -token_lp.mean(1).mean()
            if rows.has_kl and cfg.kl_factor:
                kl_hidden = hidden[rows.n_rewrite :][torch.arange(rows.size - n, device=lm.device), rows.lookup[n:]]
                kl_lp = torch.log_softmax(project_to_logits(lm, kl_hidden).float(), dim=-1)
                if kl_initial is None:
                    kl_initial = kl_lp.detach()
                loss = loss + cfg.kl_factor * F.kl_div(kl_initial, kl_lp, log_target=True, reduction="batchmean")
            for name, delta in deltas.items():
                loss = loss + cfg.v_weight_decay * delta.norm() / reference[name].norm().clamp_min(1e-8) ** 2
        p_true = answer_probability(lm, true_rows, deltas) if true_rows is not None else math.nan
        record = {"step": step, "loss": loss.item(), "p_new": token_lp[0].sum().exp().item(), "p_true": p_true}
        trace.append(record)
        if on_step:
            on_step(record)
        if not torch.isfinite(loss):
            raise EditDivergedError(f"{method} value optimisation: loss became {record['loss']} at step {step}; nothing was applied.", trace)
        if record["loss"] < cfg.stop_loss or step == cfg.v_steps:
            break
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        with torch.no_grad():
            for name, delta in deltas.items():
                max_norm = cfg.clamp_norm_factor * reference[name].norm()
                if delta.norm() > max_norm:
                    delta.mul_(max_norm / delta.norm())
    return {name: delta.detach() for name, delta in deltas.items()}, trace


def optimise_each_fact(
    lm: LoadedModel,
    request: EditRequest | BatchEditRequest,
    rows: Sequence[EditRows],
    references: Sequence[Mapping[str, torch.Tensor]],
    cfg,
    on_step: StepFn | None,
    method: str,
) -> tuple[list[dict[str, torch.Tensor]], list[dict[str, float]]]:
    """``optimise_values`` for each fact of ``request`` (its ``rows`` and ``references``), one
    after another: every fact's δ, and one trace of all their steps (``"fact"`` set in a batch)."""
    count = len(rows)
    deltas, trace = [], []
    for index, (single, fact_rows, reference) in enumerate(zip(request.requests, rows, references)):
        fact_deltas, steps = optimise_values(
            lm, fact_rows, reference, cfg, fact_step(on_step, index, count), method, true_answer_rows(lm, single)
        )
        deltas.append(fact_deltas)
        trace += fact_trace(steps, index, count)
    return deltas, trace


# --------------------------------------------------------------------------- weights


def check_layers(layers: Sequence[int], lm: LoadedModel, field_name: str) -> None:
    bad = [l for l in layers if not 0 <= l < lm.num_layers]
    if bad or not layers:
        raise ValueError(f"{field_name}={list(layers)}: layers must be in 0..{lm.num_layers - 1} for this model.")


def to_weight_layout(lm: LoadedModel, update: torch.Tensor) -> torch.Tensor:
    """[out, in] update -> the parameter's own layout. Attention output projections share the
    down projection's layout in every supported family (GPT-2: both Conv1D; others: Linear)."""
    return update if lm.adapter.weight_layout == "out_in" else update.T.contiguous()


def solve(matrix: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """``matrix⁻¹ rhs``, with an error that says what to change when the statistics are singular."""
    try:
        return torch.linalg.solve(matrix, rhs)
    except torch.linalg.LinAlgError as err:
        raise EditError(
            f"The key statistics are singular ({err}); raise StatsConfig.regulariser (λ) or StatsConfig.samples."
        ) from err


def rank_one_update(key: torch.Tensor, delta: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """ΔW = δ (C⁻¹k)ᵀ / (kᵀC⁻¹k) in [out, in]: the least change (under C) with ΔW k = δ."""
    k = key.double().to(cov.device)
    c_inv_k = solve(cov, k)
    return (delta.double().to(cov.device)[:, None] * c_inv_k[None, :] / (k @ c_inv_k)).float()


def layout_deltas(
    lm: LoadedModel, updates: Mapping[str, torch.Tensor], trace: list[dict[str, float]], method: str
) -> dict[str, torch.Tensor]:
    """``{module: update [out, in]}`` -> ``{"<module>.weight": delta}``, each in its parameter's own
    layout on the model's device; a delta that is not finite is refused (``finite_or_raise``)."""
    deltas = {f"{module}.weight": to_weight_layout(lm, update.to(lm.device)) for module, update in updates.items()}
    finite_or_raise(deltas, trace, method)
    return deltas


class TemporaryWeights:
    """``with TemporaryWeights(lm) as written:`` adds deltas to weights in place (MEMIT/PMET update
    layer after layer, each layer on the ones written below it) and restores the saved originals
    bit for bit on exit; ``deltas`` holds what was written, the edit."""

    def __init__(self, lm: LoadedModel):
        self.params = dict(lm.model.named_parameters())
        self.originals: dict[str, torch.Tensor] = {}
        self.deltas: dict[str, torch.Tensor] = {}

    def __enter__(self) -> "TemporaryWeights":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.restore()

    def add(self, deltas: Mapping[str, torch.Tensor]) -> None:
        for name, delta in deltas.items():
            param = self.params[name]
            if name not in self.originals:
                self.originals[name] = param.detach().clone()
            with torch.no_grad():
                param.add_(delta.to(device=param.device, dtype=param.dtype))
            self.deltas[name] = delta

    def restore(self) -> None:
        with torch.no_grad():
            for name, original in self.originals.items():
                self.params[name].copy_(original)


def finite_or_raise(deltas: Mapping[str, torch.Tensor], trace: list[dict[str, float]], method: str) -> None:
    for name, delta in deltas.items():
        if not torch.isfinite(delta).all():
            raise EditDivergedError(
                f"{method}: the update of {name} is not finite (singular statistics or a diverged δ); "
                "nothing was applied. Raise StatsConfig.regulariser or lower v_lr.",
                trace,
            )



def least_squares_update(key: torch.Tensor, change: torch.Tensor, cov: torch.Tensor, weight: float) -> torch.Tensor:
    """MEMIT's ΔW = Δm kᵀ (λ·C + k kᵀ)⁻¹ in [out, in] for one key [in] and its change [out], or
    ΔW = R Kᵀ (λ·C + K Kᵀ)⁻¹ for k keys [k, in] and their changes [k, out] at once (a batch)."""
    k = key.double().to(cov.device).reshape(-1, key.shape[-1]).T.contiguous()  # [in, keys]
    changes = change.double().to(cov.device).reshape(-1, change.shape[-1]).T.contiguous()  # [out, keys]
    adjusted = solve(weight * cov + k @ k.T, k)  # (λC + kkᵀ)⁻¹ k
    return (changes @ adjusted.T).float()
