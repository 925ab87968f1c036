"""Training MEND's hypernetwork for one model (Mitchell et al. 2022, §3.2 and Alg. 1).

Each step takes one edit (a fact in one of the training languages):
1. the gradient factors (u_t, δ_t) of the edited weights on the edit prompt (``rank_one_factors``);
2. ΔW = −η Σ δ̃ ũᵀ from the hypernetwork (differentiable in its parameters and η);
3. with W + ΔW, the edit loss L_e (NLL of ``target_new`` after the edit prompt and, as MEND's
   equivalence neighbourhood, after its paraphrases in the same language) and the locality
   loss L_loc = KL(p_before ‖ p_after) of the next-token distributions at every position of a
   few ordinary texts;
4. one Adam step on c_edit·L_e + c_loc·L_loc (MEND's c_edit 0.1, c_loc 1), the editor networks
   at ``lr`` and the step sizes η at ``lr_lr``.

Locality text is not other facts' prompts (those are what an edit must *not* change on purpose,
the benchmark's NS): it is ordinary text the model writes itself from the first words of
everyday sentences in the training languages (``layer_stats.SEED_PROMPTS``, seeded), generated
once and kept next to the checkpoint.

Resuming is exact: the order of edits and locality texts is a function of (seed, step), and the
checkpoint holds the hypernetwork (with its running input statistics), Adam's state and the
loss history, so an interrupted run continued to the end equals an uninterrupted one bit for bit.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..data.schema import Fact
from ..fields import described
from ..models import LoadedModel
from ..scoring import Completion, encode_completion, project_to_logits
from .hparams import resolve
from .layer_stats import sample_texts, seed_prompts
from .mend import (
    CHECKPOINT_FORMAT,
    HYPERNETWORK_FILE,
    TRAINING_FILE,
    MendConfig,
    answer_batch,
    answer_nll,
    build_hypernetwork,
    checkpoint_dir,
    deltas_added,
    edited_weights,
    forward_hidden,
    locality_kl,
    rank_one_factors,
    token_batch,
)
from .mend_net import MendHypernetwork

log = logging.getLogger(__name__)

Progress = Callable[[int, int, dict], None]
"""Called after each step with (steps done, total steps, the step's record)."""


@dataclass(frozen=True)
class MendTrainConfig:
    """How the hypernetwork is trained. MEND's values where they fit a CPU budget; ``lr`` is
    larger than MEND's 1e-6, which was meant for ~10⁵ steps on a GPU, not a few hundred."""

    mend: MendConfig = described(help="the hypernetwork being trained", factory=MendConfig)
    steps: int = described(600, "Edits to train on (one per step).")
    rank: int = described(1920, "Rank of each low-rank editor layer (MEND: 1920).")
    n_hidden: int = described(1, "Hidden layers of the editor MLP (MEND: 1).")
    lr: float = described(1e-4, "Adam learning rate of the editor networks (MEND: 1e-6).")
    lr_lr: float = described(1e-4, "Adam learning rate of the step sizes η (MEND: 1e-4).")
    edit_lr: float = described(1e-4, "Initial step size η of every weight (MEND: 1e-4).")
    edit_weight: float = described(0.1, "c_edit, weight of the edit loss (MEND: 0.1).")
    locality_weight: float = described(1.0, "c_loc, weight of the KL locality loss (MEND: 1).")
    grad_clip: float = described(100.0, "Gradient-norm clip of each step (MEND: 100).")
    paraphrases: bool = described(True, "Edit loss also on the fact's paraphrases (MEND's equivalence neighbourhood).")
    locality_texts: int = described(24, "Ordinary texts generated once for the locality loss.")
    locality_tokens: int = described(24, "Generated tokens per locality text.")
    locality_batch: int = described(1, "Locality texts per step (the full-vocabulary KL is most of a step's cost).")
    seed: int = described(0, "Seeds the order of edits and the locality texts.")
    save_every: int = described(50, "Steps between resumable checkpoints.")

    def __post_init__(self) -> None:
        if self.steps < 1 or self.save_every < 1:
            raise ValueError("MendTrainConfig: steps and save_every must be ≥ 1.")
        if self.rank < 1 or self.n_hidden < 0:
            raise ValueError("MendTrainConfig: rank must be ≥ 1 and n_hidden ≥ 0 (MEND: 1920 and 1).")
        if not (self.lr > 0 and self.lr_lr >= 0 and self.edit_lr > 0):
            raise ValueError("MendTrainConfig: lr and edit_lr must be > 0, lr_lr ≥ 0.")
        if self.locality_texts < 1 or self.locality_tokens < 1 or self.locality_batch < 1:
            raise ValueError("MendTrainConfig: locality_texts, locality_tokens and locality_batch must be ≥ 1.")


@dataclass(frozen=True)
class MendExample:
    """One training edit: ``fact`` written in ``language``."""

    fact: Fact
    language: str


def training_examples(facts: Sequence[Fact], languages: Sequence[str] | None = None) -> list[MendExample]:
    """Every (fact, language) pair with the language among ``languages`` (None: all the facts have)."""
    examples = [
        MendExample(fact, code)
        for fact in facts
        for code in fact.language_codes
        if languages is None or code in languages
    ]
    if not examples:
        raise ValueError(f"No training edits: none of the facts is written in {', '.join(languages or [])}.")
    return examples


@dataclass(frozen=True)
class MendTrainingResult:
    directory: Path
    steps_done: int
    total_steps: int
    seconds: float
    history: list[dict]
    finished: bool

    def final_losses(self, window: int = 50) -> dict[str, float]:
        """Mean of each loss over the last ``window`` steps."""
        return _tail_means(self.history, window)


# --------------------------------------------------------------------------- data


def _order(n: int, seed: int, epoch: int) -> list[int]:
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator).tolist()


def example_at(examples: Sequence[MendExample], seed: int, step: int) -> MendExample:
    """The edit of ``step``: epochs of shuffled examples, each epoch's order fixed by (seed, epoch)."""
    epoch, position = divmod(step, len(examples))
    return examples[_order(len(examples), seed, epoch)[position]]


def locality_at(texts: Sequence[list[int]], seed: int, step: int, batch: int) -> list[list[int]]:
    picked = []
    for j in range(batch):
        epoch, position = divmod(step * batch + j, len(texts))
        picked.append(texts[_order(len(texts), seed + 1, epoch)[position]])
    return picked


def locality_texts(lm: LoadedModel, cfg: MendTrainConfig, languages: Sequence[str], folder: Path) -> list[list[int]]:
    """Token ids of ``cfg.locality_texts`` ordinary texts the model writes from seed words of
    ``languages``; special tokens dropped (no BOS-only positions in the KL), cached in ``folder``."""
    tag = f"n{cfg.locality_texts}-t{cfg.locality_tokens}-seed{cfg.seed}-{'+'.join(languages)}"
    path = folder / f"locality-{tag}.pt"
    if path.exists():
        return torch.load(path, weights_only=True)
    prompts = seed_prompts(languages)
    prompts = [prompts[i % len(prompts)] for i in range(cfg.locality_texts)]
    ids, mask = sample_texts(lm, prompts, cfg.locality_tokens, cfg.seed, top_k=50, batch_size=16)
    special = set(lm.tokenizer.all_special_ids)
    bos = lm.tokenizer.bos_token_id
    texts = []
    for row, m in zip(ids.tolist(), mask.tolist()):
        tokens = [t for t, keep in zip(row, m) if keep and t not in special]
        texts.append(([bos] if bos is not None else []) + tokens)  # BOS back in front, as every prompt has
    _atomic_save(texts, path)
    return texts


def edit_items(lm: LoadedModel, example: MendExample, paraphrases: bool) -> tuple[Completion, list[Completion]]:
    """(the edit prompt's completion, completions the edit loss is measured on)."""
    block = example.fact.in_language(example.language)
    edit = block.edit
    first = encode_completion(lm, edit.filled(), edit.target_new, example.language)
    outer = [first]
    if paraphrases:
        outer += [encode_completion(lm, p, edit.target_new, example.language) for p in block.paraphrase_prompts]
    return first, outer


# --------------------------------------------------------------------------- one step


def training_step(
    lm: LoadedModel,
    net: MendHypernetwork,
    modules: Sequence[str],
    example: MendExample,
    locality: Sequence[list[int]],
    cfg: MendTrainConfig,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss of one edit (differentiable in ``net``) and its parts."""
    first, outer = edit_items(lm, example, cfg.paraphrases)
    inner = answer_batch(lm, [first])
    _, factors = rank_one_factors(lm, modules, inner, lambda hidden: answer_nll(lm, inner, hidden)[0])
    net.update_statistics(factors)
    updates = net.pseudo_gradients(factors)
    outer_batch = answer_batch(lm, outer)
    loc_batch = token_batch(lm, locality)
    keep = loc_batch.attention_mask.bool()
    with torch.no_grad():
        pre = torch.log_softmax(_logits_at(lm, forward_hidden(lm, loc_batch), keep), dim=-1)
    with torch.enable_grad(), deltas_added(lm, updates):
        edit_loss, sums = answer_nll(lm, outer_batch, forward_hidden(lm, outer_batch))
        post = torch.log_softmax(_logits_at(lm, forward_hidden(lm, loc_batch), keep), dim=-1)
        loc_loss = locality_kl(pre, post)
    loss = cfg.edit_weight * edit_loss + cfg.locality_weight * loc_loss
    return loss, {
        "loss": loss.item(),
        "edit": edit_loss.item(),
        "locality": loc_loss.item(),
        "p_new": sums[0].exp().item(),
        "language": example.language,
    }


def _logits_at(lm: LoadedModel, hidden: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    return project_to_logits(lm, hidden[keep]).float()


# --------------------------------------------------------------------------- the loop


def train_mend(
    lm: LoadedModel,
    facts: Sequence[Fact],
    cfg: MendTrainConfig = MendTrainConfig(),
    languages: Sequence[str] | None = None,
    sources: Sequence[str] = (),
    progress: Progress | None = None,
    stop_after: int | None = None,
    restart: bool = False,
) -> MendTrainingResult:
    """Train (or resume training) the hypernetwork of ``lm`` on edits of ``facts`` in
    ``languages`` (None: every language the facts have). ``stop_after`` ends the run after that
    many steps in all (a checkpoint is saved, the same call later resumes); ``sources`` names the
    data in the checkpoint. Writes ``hypernetwork.pt`` when all ``cfg.steps`` are done."""
    mend_cfg = resolve(cfg.mend, "mend", lm)
    cfg = replace(cfg, mend=mend_cfg)
    weights = edited_weights(lm, mend_cfg)
    modules = [w.module for w in weights]
    langs = list(languages) if languages else _languages_of(facts)
    examples = training_examples(facts, langs)
    folder = checkpoint_dir(lm, mend_cfg)
    folder.mkdir(parents=True, exist_ok=True)
    identity = {
        "model_key": lm.key,
        "config": mend_cfg.architecture(),
        "train": _train_settings(cfg),
        "languages": langs,
        "sources": list(sources),
        "examples": [f"{e.fact.example_id}/{e.language}" for e in examples],
    }
    torch.manual_seed(cfg.seed)  # the editor networks' initial weights
    net = build_hypernetwork(weights, cfg.rank, cfg.n_hidden, cfg.edit_lr).to(lm.device)
    optimiser = torch.optim.Adam(
        [{"params": [p for n, p in net.named_parameters() if n != "edit_lrs"], "lr": cfg.lr},
         {"params": [net.edit_lrs], "lr": cfg.lr_lr}]
    )
    step, history, seconds = 0, [], 0.0
    state_path = folder / TRAINING_FILE
    if state_path.exists() and not restart:
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        _check_resumable(state, identity, state_path)
        net.load_state_dict(state["hypernetwork"])
        optimiser.load_state_dict(state["optimiser"])
        step, history, seconds = state["step"], list(state["history"]), float(state["seconds"])
        log.info("Resuming MEND training of %s at step %d of %d", lm.key, step, cfg.steps)
    elif restart:
        (folder / HYPERNETWORK_FILE).unlink(missing_ok=True)
    texts = locality_texts(lm, cfg, langs, folder)
    end = min(cfg.steps, stop_after) if stop_after is not None else cfg.steps
    started = time.perf_counter() - seconds
    net.train()

    def save(final: bool) -> None:
        state = {
            "format": CHECKPOINT_FORMAT, **identity, "step": step, "total_steps": cfg.steps,
            "history": history, "seconds": time.perf_counter() - started,
            "hypernetwork": net.state_dict(), "optimiser": optimiser.state_dict(),
        }
        _atomic_save(state, state_path)
        if final:
            weights_meta = [[w.module, w.d_in, w.d_out] for w in weights]
            _atomic_save(
                {"format": CHECKPOINT_FORMAT, **identity, "weights": weights_meta, "steps": step,
                 "seconds": state["seconds"], "final": _tail_means(history), "hypernetwork": net.state_dict()},
                folder / HYPERNETWORK_FILE,
            )

    with lm.lock:
        try:
            while step < end:
                example = example_at(examples, cfg.seed, step)
                locality = locality_at(texts, cfg.seed, step, cfg.locality_batch)
                optimiser.zero_grad()
                loss, record = training_step(lm, net, modules, example, locality, cfg)
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"MEND training loss became {loss.item()} at step {step}; lower --set lr or edit_lr "
                        "and restart with --restart."
                    )
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
                optimiser.step()
                step += 1
                record = {"step": step, **record}
                history.append(record)
                if progress:
                    progress(step, cfg.steps, record)
                if step % cfg.save_every == 0 and step < end:
                    save(final=False)
        except KeyboardInterrupt:
            save(final=False)
            raise
        save(final=step >= cfg.steps)
    return MendTrainingResult(folder, step, cfg.steps, time.perf_counter() - started, history, step >= cfg.steps)


# --------------------------------------------------------------------------- helpers


def _languages_of(facts: Sequence[Fact]) -> list[str]:
    seen: dict[str, None] = {}
    for fact in facts:
        seen.update(dict.fromkeys(fact.language_codes))
    return list(seen)


def _train_settings(cfg: MendTrainConfig) -> dict:
    """Settings that must not change within one run (``steps`` may grow: more training)."""
    settings = asdict(cfg)
    settings.pop("mend")
    settings.pop("steps")
    settings.pop("save_every")
    return settings


def _check_resumable(state: dict, identity: dict, path: Path) -> None:
    different = [k for k, v in identity.items() if state.get(k) != v]
    if state.get("format") != CHECKPOINT_FORMAT:
        different.append("format")
    if different:
        raise ValueError(
            f"The MEND training state in {path} was started with other {', '.join(different)}. "
            "Pass --restart to start over with these settings (the old state is overwritten)."
        )


def _tail_means(history: Sequence[dict], window: int = 50) -> dict[str, float]:
    tail = history[-window:]
    keys = ("loss", "edit", "locality", "p_new")
    return {k: sum(r[k] for r in tail) / len(tail) for k in keys} if tail else {}


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)
