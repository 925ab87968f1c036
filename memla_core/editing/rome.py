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
not Wikipedia); 5 prefixes of 10 tokens (MEMIT's set) instead of ROME's 20. Prompts without
"{}" (imported datasets) mark no subject: its last token is found by its text when the prompt
contains it, otherwise the prompt's last token stands in for it.

The machinery MEMIT and PMET share with ROME (prefixes, subject positions, key capture, value
optimisation, temporary weights) lives here too, as MEMIT's code reuses ROME's.
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F

from ..data.schema import EditPrompt
from ..models import LoadedModel
from ..scoring import encode_completion, project_to_logits
from .base import Edit, EditDivergedError, EditError, EditRequest, StepFn
from .hparams import resolve
from .layer_stats import SEED_PROMPTS, LayerStats, StatsConfig, sample_texts

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RomeConfig:
    """ROME hyperparameters; defaults from the authors' ``ROME/gpt2-xl.json`` (Meng et al. 2022)."""

    layer: int | None = field(
        default=None,
        metadata={
            "label": "Layer",
            "help": "Layer whose MLP down projection gets the rank-one update; empty = per-architecture default "
            "(hparams.FAMILY_DEFAULTS).",
        },
    )
    v_lr: float = field(
        default=0.5,
        metadata={
            "label": "Learning rate of δ",
            "help": "Adam learning rate of the value offset δ (paper: 0.5).",
        },
    )
    v_steps: int = field(
        default=20,
        metadata={
            "label": "Steps of δ",
            "help": "Optimisation steps of δ at most (v_num_grad_steps; paper: 20).",
        },
    )
    v_weight_decay: float = field(
        default=0.5, metadata={"help": "Weight of ‖δ‖ / ‖v‖² in the loss (paper: 0.5)."},
    )
    kl_factor: float = field(
        default=0.0625,
        metadata={
            "help": "Weight of KL(after-subject distribution, edited ‖ original) (paper: 0.0625).",
        },
    )
    clamp_norm_factor: float = field(default=4.0, metadata={"help": "‖δ‖ ≤ this · ‖v‖ (paper: 4)."})
    stop_loss: float = field(default=5e-2, metadata={"help": "Stop optimising δ below this loss."})
    context_templates: int = field(
        default=5, metadata={"help": "Generated prefixes besides the bare prompt (MEMIT: 5 of 10 tokens)."},
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
        check_value_fields(self)


def check_value_fields(cfg) -> None:
    if cfg.v_steps < 0 or cfg.context_templates < 0 or cfg.context_length < 1:
        raise ValueError(f"{type(cfg).__name__}: v_steps and context_templates must be ≥ 0, context_length ≥ 1.")
    if not cfg.v_lr > 0:
        raise ValueError(f"{type(cfg).__name__}.v_lr must be > 0 (the paper uses 0.5).")
    if cfg.clamp_norm_factor <= 0:
        raise ValueError(f"{type(cfg).__name__}.clamp_norm_factor must be > 0 (the paper uses 4).")


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
    width = max(len(s) for s in seqs)
    pad = lm.tokenizer.pad_token_id or 0
    device = lm.device
    input_ids = torch.full((len(seqs), width), pad, dtype=torch.long, device=device)
    mask = torch.zeros_like(input_ids)
    for r, seq in enumerate(seqs):
        input_ids[r, : len(seq)] = torch.tensor(seq, device=device)
        mask[r, : len(seq)] = 1
    return EditRows(
        input_ids, mask, torch.tensor(lookups, device=device), len(prefixes), tuple(answer),
        torch.tensor(cols, device=device),
    )


# --------------------------------------------------------------------------- hooks


def rows_view(tensor: torch.Tensor, rows: int) -> torch.Tensor:
    """[rows, positions, d] view; some models (OPT) flatten [rows·positions, d] inside the MLP."""
    return tensor.reshape(rows, -1, tensor.shape[-1])


def block_hidden(output) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


@contextmanager
def add_at_lookup(lm: LoadedModel, rows: EditRows, deltas: Mapping[str, torch.Tensor]) -> Iterator[None]:
    """Add ``deltas[name]`` to the output of module ``name`` at every row's subject token."""
    row_idx = torch.arange(rows.size, device=lm.device)
    handles = []

    def hook(_module, _args, output, name):
        out = rows_view(output, rows.size)
        add = torch.zeros_like(out).index_put((row_idx, rows.lookup), deltas[name].to(out.dtype).expand(rows.size, -1))
        return (out + add).reshape(output.shape)

    try:
        for name in deltas:
            module = lm.model.get_submodule(name)
            handles.append(module.register_forward_hook(lambda m, a, o, name=name: hook(m, a, o, name)))
        yield
    finally:
        for handle in handles:
            handle.remove()


def capture(
    lm: LoadedModel,
    rows: EditRows,
    inputs_of: Sequence[str] = (),
    outputs_of: Sequence[str] = (),
    blocks: Sequence[int] = (),
    deltas: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Module inputs (``"in:<name>"``), outputs (``"out:<name>"``) and decoder-block outputs
    (``"block:<l>"``) at every row's subject token: [rows, d] float32, no gradient."""
    row_idx = torch.arange(rows.size, device=lm.device)
    found: dict[str, torch.Tensor] = {}
    handles = []

    def pick(tensor: torch.Tensor) -> torch.Tensor:
        return rows_view(tensor, rows.size)[row_idx, rows.lookup].detach().float()

    try:
        for name in inputs_of:
            module = lm.model.get_submodule(name)
            handles.append(module.register_forward_pre_hook(lambda m, a, name=name: found.__setitem__(f"in:{name}", pick(a[0]))))
        for name in outputs_of:
            module = lm.model.get_submodule(name)
            handles.append(module.register_forward_hook(lambda m, a, o, name=name: found.__setitem__(f"out:{name}", pick(o))))
        layers = lm.adapter.layer_modules(lm.model)
        for layer in blocks:
            handles.append(
                layers[layer].register_forward_hook(
                    lambda m, a, o, layer=layer: found.__setitem__(f"block:{layer}", pick(block_hidden(o)))
                )
            )
        with torch.no_grad(), add_at_lookup(lm, rows, deltas or {}):
            lm.model.base_model(input_ids=rows.input_ids, attention_mask=rows.attention_mask)
    finally:
        for handle in handles:
            handle.remove()
    return found


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


class TemporaryWeights:
    """Adds deltas to weights in place (MEMIT/PMET update layer after layer) and restores the
    saved originals bit for bit in ``restore``."""

    def __init__(self, lm: LoadedModel):
        self.params = dict(lm.model.named_parameters())
        self.originals: dict[str, torch.Tensor] = {}

    def add(self, name: str, delta: torch.Tensor) -> None:
        param = self.params[name]
        if name not in self.originals:
            self.originals[name] = param.detach().clone()
        with torch.no_grad():
            param.add_(delta.to(device=param.device, dtype=param.dtype))

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
            seen = capture(lm, rows, inputs_of=[name], outputs_of=[name])
            key = seen[f"in:{name}"][: rows.n_rewrite].mean(0)
            deltas, trace = optimise_values(
                lm, rows, {name: seen[f"out:{name}"][0]}, cfg, on_step, "ROME", true_answer_rows(lm, request)
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

