"""Second moment C = E[k kᵀ] of a layer's projection inputs, for ROME, MEMIT and PMET.

The originals estimate C on 100k Wikipedia samples, which cannot be downloaded here. memla
estimates it on text the model itself generates: a few hundred short samples continued, with a
fixed seed, from the first words of ordinary sentences in the 12 MKEB languages
(``SEED_PROMPTS``). Self-generated text follows the model's own distribution of keys, which is
what C is for (it says which key directions are common, so an edit avoids them); it is less
varied than Wikipedia, and the default 256 samples of 24 tokens (≈ 6.7k tokens on Gemma 3
270M, about 4 CPU-minutes once) only roughly pin down a 2048×2048 matrix: fewer samples give a
noisier, lower-rank C, so every use adds ``λ·I`` (``StatsConfig.regulariser``, relative to the
mean variance ``tr C / d``), which keeps C invertible and makes updates lean toward the plain
least-norm direction where the data say little. On Gemma 3 270M the subject specificity of the
ROME update (how much of it a neighbouring subject's key receives) barely moves between
λ = 1e-3 and 1e-1, so the data, not λ, limit it.

Estimates are cached on disk under ``cache_dir()/layer_stats/<model key>/``, one safetensors
file per (module, layer, sample count, sample length, seed); the generated token ids are cached
too, so a new layer costs one forward pass, not another round of generation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import torch
from safetensors.torch import load_file, save_file

from ..fields import described
from ..hooks import trace
from ..models import LoadedModel
from ..paths import cache_dir

log = logging.getLogger(__name__)

ModuleKind = Literal["down_proj", "attn_out"]
"""Which projection's inputs: the MLP down projection (the keys of ROME/MEMIT) or the
attention output projection (PMET's attention keys)."""

SEED_PROMPTS: dict[str, tuple[str, ...]] = {
    "en": ("The", "In the morning", "My friend", "When I was", "Yesterday", "This is"),
    "zh": ("今天", "我的朋友", "在这个城市", "他们说", "昨天晚上", "这是"),
    "fr": ("Le", "Ce matin", "Mon ami", "Quand j'étais", "Hier", "Il y a"),
    "de": ("Die", "Heute Morgen", "Mein Freund", "Als ich", "Gestern", "Es gibt"),
    "ja": ("今日は", "私の友達は", "この町では", "昨日", "彼は", "日本の"),
    "ko": ("오늘은", "내 친구는", "이 도시에서", "어제", "그는", "한국의"),
    "pt": ("O", "Hoje de manhã", "Meu amigo", "Quando eu era", "Ontem", "Existe"),
    "ru": ("Сегодня", "Мой друг", "В этом городе", "Когда я был", "Вчера", "Это"),
    "it": ("Il", "Stamattina", "Il mio amico", "Quando ero", "Ieri", "C'è"),
    "es": ("El", "Esta mañana", "Mi amigo", "Cuando era", "Ayer", "Hay"),
    "pl": ("Dzisiaj", "Mój przyjaciel", "W tym mieście", "Kiedy byłem", "Wczoraj", "To jest"),
    "th": ("วันนี้", "เพื่อนของฉัน", "ในเมืองนี้", "เมื่อวาน", "เขา", "ประเทศไทย"),
}
"""First words of ordinary sentences, six per MKEB language: the starts of generated samples."""


@dataclass(frozen=True)
class StatsConfig:
    """How C is estimated. ROME/MEMIT use 100k Wikipedia samples (``mom2_n_samples``); a
    laptop CPU cannot afford that many self-generated ones, hence a few hundred short ones
    plus the ``regulariser``."""

    samples: int = described(
        256, "Generated texts the key covariance is estimated from (cycled over the seed prompts)."
    )
    max_new_tokens: int = described(24, "Length of each generated text, in tokens.")
    seed: int = described(0, "Sampling seed of the texts.")
    batch_size: int = described(64, "Texts generated per batch.")
    top_k: int = described(
        50, "Sampling from the top k tokens: diverse text, but not the long tail of a large vocabulary."
    )
    regulariser: float = described(1e-2, "λ in C + λ·(tr C / d)·I.")

    def __post_init__(self) -> None:
        if self.samples < 1 or self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError("StatsConfig: samples, max_new_tokens and batch_size must be ≥ 1.")
        if self.regulariser < 0:
            raise ValueError("StatsConfig.regulariser (λ) must be ≥ 0; use a small positive value such as 1e-2.")


def seed_prompts(languages: Sequence[str] | None = None) -> list[str]:
    """Seed prompts of ``languages`` (all 12 by default), interleaved across languages."""
    codes = [c for c in (languages or SEED_PROMPTS) if c in SEED_PROMPTS] or ["en"]
    width = max(len(SEED_PROMPTS[c]) for c in codes)
    return [SEED_PROMPTS[c][i] for i in range(width) for c in codes if i < len(SEED_PROMPTS[c])]


def sample_texts(
    lm: LoadedModel, prompts: Sequence[str], max_new_tokens: int, seed: int, top_k: int, batch_size: int = 64
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one continuation per prompt; returns left-padded (ids, mask) of prompt+continuation.

    The global RNG is forked, so callers' random state is untouched and the result depends
    only on the model, the prompts and ``seed``.
    """
    tok = lm.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    rows: list[list[int]] = []
    devices = [lm.device] if lm.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for start in range(0, len(prompts), batch_size):
            encoded = [tok(p)["input_ids"] for p in prompts[start : start + batch_size]]
            width = max(len(e) for e in encoded)
            ids = torch.full((len(encoded), width), pad, dtype=torch.long, device=lm.device)
            mask = torch.zeros_like(ids)
            for r, e in enumerate(encoded):
                ids[r, width - len(e) :] = torch.tensor(e, device=lm.device)
                mask[r, width - len(e) :] = 1
            with torch.no_grad():
                out = lm.model.generate(
                    input_ids=ids, attention_mask=mask, do_sample=True, top_k=top_k, top_p=1.0,
                    temperature=1.0, max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens,
                    pad_token_id=pad,
                )
            for r, e in enumerate(encoded):
                rows.append(e + out[r, width:].tolist())
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, row in enumerate(rows):
        ids[r, width - len(row) :] = torch.tensor(row)
        mask[r, width - len(row) :] = 1
    return ids, mask


def module_name(lm: LoadedModel, kind: ModuleKind, layer: int) -> str:
    return lm.adapter.down_proj_name(layer) if kind == "down_proj" else lm.adapter.attn_out_name(layer)


class LayerStats:
    """Cached second moments of one model (thread-safe through ``lm.lock``)."""

    def __init__(self, lm: LoadedModel, config: StatsConfig = StatsConfig(), root: Path | None = None):
        self.lm = lm
        self.config = config
        self.root = (root or cache_dir() / "layer_stats") / lm.key
        self.root.mkdir(parents=True, exist_ok=True)

    def _tag(self) -> str:
        c = self.config
        return f"n{c.samples}-t{c.max_new_tokens}-k{c.top_k}-seed{c.seed}"

    def _path(self, kind: ModuleKind, layer: int) -> Path:
        return self.root / f"{kind}-layer{layer}-{self._tag()}.safetensors"

    def second_moments(self, layers: Sequence[int], kind: ModuleKind = "down_proj") -> dict[int, torch.Tensor]:
        """Raw C (float32, on the model's device) of every layer in ``layers``."""
        with self.lm.lock:
            missing = [l for l in dict.fromkeys(layers) if not self._path(kind, l).exists()]
            if missing:
                self._estimate(missing, kind)
            return {l: load_file(str(self._path(kind, l)))["mom2"].to(self.lm.device) for l in layers}

    def regularised(self, layer: int, kind: ModuleKind = "down_proj") -> torch.Tensor:
        """C + λ·(tr C / d)·I in float64, ready for solves."""
        return regularise(self.second_moments([layer], kind)[layer], self.config.regulariser)

    def _samples(self) -> tuple[torch.Tensor, torch.Tensor]:
        path = self.root / f"samples-{self._tag()}.safetensors"
        if path.exists():
            data = load_file(str(path))
            return data["ids"], data["mask"]
        c = self.config
        prompts = seed_prompts()
        prompts = [prompts[i % len(prompts)] for i in range(c.samples)]
        log.info("Generating %d samples of %d tokens for layer statistics of %s", c.samples, c.max_new_tokens, self.lm.key)
        ids, mask = sample_texts(self.lm, prompts, c.max_new_tokens, c.seed, c.top_k, c.batch_size)
        _atomic_save({"ids": ids.contiguous(), "mask": mask.contiguous()}, path)
        return ids, mask

    def _estimate(self, layers: list[int], kind: ModuleKind) -> None:
        ids, mask = self._samples()
        lm = self.lm
        special = torch.tensor(sorted(set(lm.tokenizer.all_special_ids)), dtype=torch.long)
        # Special tokens (BOS, pads) are left out: BOS keys are huge outliers (attention sinks)
        # that ordinary prompts never ask a fact about.
        keep = mask.bool() & ~torch.isin(ids, special)
        sums: dict[int, torch.Tensor] = {}
        count = 0
        layer_of = {module_name(lm, kind, layer): layer for layer in layers}
        for start in range(0, ids.shape[0], self.config.batch_size):
            chunk = slice(start, start + self.config.batch_size)
            chunk_keep = keep[chunk].to(lm.device)
            count += int(keep[chunk].sum())
            with torch.no_grad(), trace(lm.model, inputs=list(layer_of), rows=chunk_keep.shape[0]) as seen:
                lm.model.base_model(input_ids=ids[chunk].to(lm.device), attention_mask=mask[chunk].to(lm.device))
            for name, layer in layer_of.items():
                x = seen.inputs[name][chunk_keep].double()
                sums[layer] = x.T @ x if layer not in sums else sums[layer] + x.T @ x
        for layer in layers:
            mom2 = (sums[layer] / max(count, 1)).float().cpu().contiguous()
            _atomic_save({"mom2": mom2, "count": torch.tensor([count])}, self._path(kind, layer))
        log.info("Layer statistics of %s (%s, layers %s) from %d tokens", lm.key, kind, layers, count)


def regularise(mom2: torch.Tensor, regulariser: float) -> torch.Tensor:
    """C + λ·(tr C / d)·I (float64): λ is relative to the mean variance, so one value fits all models."""
    c = mom2.double()
    scale = torch.diagonal(c).mean().clamp_min(1e-12)
    return c + regulariser * scale * torch.eye(c.shape[0], dtype=c.dtype, device=c.device)


def _atomic_save(tensors: dict[str, torch.Tensor], path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp))
    tmp.replace(path)
