"""Knowledge neurons by integrated gradients (docs/method.md §1, paper §4.1).

A neuron (l, i) is the i-th input feature of layer l's MLP down projection. Its attribution for
a prompt is the integrated gradient of P(answer) when only the *last position's* activation of
layer l is moved from a baseline to its real value.

Why a hand-written batched path instead of captum's ``IntegratedGradients`` per layer: captum
moves every input along one shared path, while here each layer has its own path (L independent
integrals). Because only the last position is patched, every earlier position is the same in all
L·m forward passes: we run the prefix once, reuse its key/value cache, and push all (layer, step)
pairs through the model as one batch of single-token rows. captum still supplies the Riemann step
positions and the slow reference (``attribute_naive``), which the tests and benchmark compare
against.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Literal, Sequence

import numpy as np
import pandas as pd
import torch
from captum.attr import IntegratedGradients
from captum.attr._utils.approximation_methods import approximation_parameters

from .data.schema import Fact
from .fields import described
from .hooks import trace
from .models import LoadedModel
from .neuron_bundle import NeuronBundle, load_bundle
from .paths import cache_dir
from .scoring import Completion, encode_completion, greedy_generate

log = logging.getLogger(__name__)

Neuron = tuple[int, int]  # (layer, index)
ProgressFn = Callable[[int, int, str], None]  # (done, total, what)


@dataclass(frozen=True)
class NeuronConfig:
    """Integrated-gradients settings; defaults from docs/method.md §1 (the authors' code)."""

    steps: int = described(
        20, "m: Riemann steps of integrated gradients (paper: 20); fewer are faster and coarser.", label="IG steps m"
    )
    baseline: Literal["eos", "zero"] = described(
        "eos",
        "eos: each token replaced by end-of-sequence, averaged (authors' code); zero: all-zero activation.",
        label="IG baseline",
    )
    threshold: float = described(
        0.3,
        "A prompt keeps the neurons whose attribution exceeds this share of its largest one (paper: 0.3).",
        label="Threshold",
    )
    independent_languages: tuple[str, ...] = described(
        ("en", "zh", "fr"),
        "Languages whose neuron sets are intersected into the language-independent neurons (authors' "
        "code: en, zh, fr).",
    )
    use_paraphrases: bool = described(
        True, "Attribute the paraphrases of the edit prompt too, not only the edit prompt."
    )
    max_batch_rows: int = described(0, "Rows per forward pass; 0 = sized from the vocabulary.")
    # Authors'-code switches (docs/implementation.md, "Reproducing the authors"):
    # IG multiplier: "difference" = (w − w′)·∫∂P (the IG definition, memla's default);
    # "activation" = w·∫∂P, as the released code multiplies by the real activation.
    ig_multiplier: Literal["difference", "activation"] = described(
        "difference",
        "difference = (w − w′)·∫∂P, the IG definition (memla's default); activation = w·∫∂P, as the released code.",
    )
    # Where a neuron's activation is read and patched: "down_input" = the down projection's input
    # (memla's default); "up_output" = the up projection's output before the nonlinearity (the
    # released code, e.g. GPT-2's c_fc). The edited neurons are the same intermediate indices.
    activation_site: Literal["down_input", "up_output"] = described(
        "down_input",
        "Where a neuron is read and patched: down_input = the down projection's input (default); "
        "up_output = the up projection's output before the nonlinearity (the released code).",
    )

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError("NeuronConfig.steps must be at least 1.")
        if not 0 < self.threshold <= 1:
            raise ValueError("NeuronConfig.threshold is a fraction of the max attribution, in (0, 1].")
        if self.baseline not in ("eos", "zero"):
            raise ValueError("NeuronConfig.baseline must be 'eos' or 'zero'.")
        if self.ig_multiplier not in ("difference", "activation"):
            raise ValueError("NeuronConfig.ig_multiplier must be 'difference' (w − w′) or 'activation' (w).")
        if self.activation_site not in ("down_input", "up_output"):
            raise ValueError("NeuronConfig.activation_site must be 'down_input' or 'up_output'.")


@dataclass(frozen=True)
class PromptAttribution:
    """Attribution of every neuron for one prompt: ``scores[layer, neuron]``."""

    language: str
    prompt: str
    answer: str
    scores: np.ndarray

    def coarse_neurons(self, threshold: float) -> frozenset[Neuron]:
        top = float(self.scores.max())
        if top <= 0:
            return frozenset()
        layers, idx = np.nonzero(self.scores > threshold * top)
        return frozenset(zip(layers.tolist(), idx.tolist()))


@dataclass(frozen=True)
class NeuronSets:
    """The neuron sets MEMLA edits: per-language unions, their intersection, the rest."""

    fact_id: str
    source_language: str
    per_language: dict[str, frozenset[Neuron]]
    language_independent: frozenset[Neuron]
    language_specific: frozenset[Neuron]
    attributions: tuple[PromptAttribution, ...] = field(default=(), repr=False)
    config: NeuronConfig = NeuronConfig()

    @staticmethod
    def by_layer(neurons: Iterable[Neuron]) -> dict[int, list[int]]:
        layers: dict[int, list[int]] = {}
        for layer, index in sorted(neurons):
            layers.setdefault(layer, []).append(index)
        return layers

    def to_frame(self) -> pd.DataFrame:
        """One row per (language, layer, neuron) with its set membership."""
        rows = []
        for lang, neurons in self.per_language.items():
            for layer, index in sorted(neurons):
                rows.append(
                    {
                        "language": lang,
                        "layer": layer,
                        "neuron": index,
                        "language_independent": (layer, index) in self.language_independent,
                    }
                )
        return pd.DataFrame(rows, columns=["language", "layer", "neuron", "language_independent"])

    def layer_counts(self) -> pd.DataFrame:
        """Per layer: how many language-specific and language-independent neurons."""
        layers = sorted({l for l, _ in self.language_specific | self.language_independent})
        return pd.DataFrame(
            {
                "layer": layers,
                "language_specific": [sum(1 for l, _ in self.language_specific if l == x) for x in layers],
                "language_independent": [sum(1 for l, _ in self.language_independent if l == x) for x in layers],
            }
        )


# --------------------------------------------------------------------------- hooks


@contextmanager
def patch_activations(
    lm: LoadedModel, patch: Callable[[int, torch.Tensor], torch.Tensor], batch: int, site: str = "down_input"
) -> Iterator[None]:
    """Temporarily replace each layer's neuron activations by ``patch(layer, x)``.

    ``site`` says where they are read: the down projection's input (``down_input``) or the up
    projection's output (``up_output``, before the nonlinearity). ``x`` is always
    [batch, positions, neurons] (``hooks.trace`` undoes OPT's flattening).
    """
    if site == "up_output":
        layer_of = {lm.adapter.up_proj_name(layer): layer for layer in range(lm.num_layers)}
        where = {"outputs": list(layer_of), "patch_output": lambda name, x: patch(layer_of[name], x)}
    else:
        layer_of = {lm.adapter.down_proj_name(layer): layer for layer in range(lm.num_layers)}
        where = {"inputs": list(layer_of), "patch_input": lambda name, x: patch(layer_of[name], x)}
    with trace(lm.model, rows=batch, **where):
        yield


def last_position_activations(
    lm: LoadedModel, input_ids: torch.Tensor, mask: torch.Tensor | None = None, site: str = "down_input"
) -> torch.Tensor:
    """Neuron activations at each row's last real token: [rows, layers, neurons]."""
    captured: dict[int, torch.Tensor] = {}
    if mask is None:
        last = torch.full((input_ids.shape[0],), input_ids.shape[1] - 1, device=input_ids.device)
    else:
        last = mask.sum(1) - 1
    rows = torch.arange(input_ids.shape[0], device=input_ids.device)

    def keep(layer: int, x: torch.Tensor) -> torch.Tensor:
        captured[layer] = x[rows, last].detach().float()
        return x

    with torch.no_grad(), patch_activations(lm, keep, input_ids.shape[0], site):
        lm.model(input_ids=input_ids, attention_mask=mask)
    return torch.stack([captured[l] for l in range(lm.num_layers)], dim=1)


def _baseline(lm: LoadedModel, ids: list[int], kind: str, site: str = "down_input") -> tuple[torch.Tensor, torch.Tensor]:
    """(real activations [L, N], baseline activations [L, N]) at the last position."""
    device = lm.device
    rows = [ids]
    if kind == "eos":
        eos = lm.tokenizer.eos_token_id
        special = set(lm.tokenizer.all_special_ids)
        # Each ordinary token in turn replaced by EOS (Chen et al. 2023); BOS stays.
        for pos, token in enumerate(ids):
            if token not in special:
                variant = list(ids)
                variant[pos] = eos
                rows.append(variant)
    acts = last_position_activations(lm, torch.tensor(rows, device=device), site=site)
    real = acts[0]
    if kind == "zero" or len(rows) == 1:
        return real, torch.zeros_like(real)
    return real, acts[1:].mean(0)


def _alphas(steps: int) -> list[float]:
    # Riemann right sum: alpha_j = j/m, j = 1..m, each weighted 1/m (docs/method.md §1).
    _, alphas_fn = approximation_parameters("riemann_right")
    return [float(a) for a in alphas_fn(steps)]


def _target_prob(logits: torch.Tensor, target: int) -> torch.Tensor:
    return torch.softmax(logits.float(), dim=-1)[..., target]


def attribute_last_token(lm: LoadedModel, ids: list[int], target: int, config: NeuronConfig) -> np.ndarray:
    """Integrated gradients of P(target | ids) for every neuron: array [layers, neurons]."""
    return integrate_last_token(lm, ids, target, config)[config.ig_multiplier]


def integrate_last_token(lm: LoadedModel, ids: list[int], target: int, config: NeuronConfig) -> dict[str, np.ndarray]:
    """Attribution under both IG multipliers (``difference``: (w − w′)·ḡ, ``activation``: w·ḡ),
    from one integration: the cache keeps both, so switching the multiplier costs no IG."""
    device = lm.device
    n_layers, steps = lm.num_layers, config.steps
    site = config.activation_site
    real, base = _baseline(lm, ids, config.baseline, site)
    alphas = torch.tensor(_alphas(steps), device=device)
    prefix_cache = None
    if len(ids) > 1:
        with torch.no_grad():
            prefix_cache = lm.model(input_ids=torch.tensor([ids[:-1]], device=device), use_cache=True).cache
    last_token = ids[-1]
    vocab = lm.model.get_output_embeddings().weight.shape[0]
    max_rows = config.max_batch_rows or max(steps, int(4e7 // vocab) // steps * steps)
    pairs = [(layer, j) for layer in range(n_layers) for j in range(steps)]
    grad_sum = torch.zeros(n_layers, real.shape[-1], device=device)
    for start in range(0, len(pairs), max_rows):
        chunk = pairs[start : start + max_rows]
        leaves: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        for layer in sorted({l for l, _ in chunk}):
            row_idx = torch.tensor([r for r, (l, _) in enumerate(chunk) if l == layer], device=device)
            a = alphas[torch.tensor([j for l, j in chunk if l == layer], device=device)]
            point = (base[layer] + a[:, None] * (real[layer] - base[layer])).requires_grad_(True)
            leaves[layer] = (row_idx, point)

        def patch(layer: int, x: torch.Tensor) -> torch.Tensor:
            if layer not in leaves:
                return x
            row_idx, point = leaves[layer]
            x = x.clone()
            x[row_idx, -1] = point.to(x.dtype)
            return x

        cache = None
        if prefix_cache is not None:
            cache = copy.deepcopy(prefix_cache)
            cache.batch_repeat_interleave(len(chunk))
        inputs = torch.full((len(chunk), 1), last_token, dtype=torch.long, device=device)
        with torch.enable_grad(), patch_activations(lm, patch, len(chunk), site):
            logits = lm.model(input_ids=inputs, cache=cache, use_cache=cache is not None).logits[:, -1]
            prob = _target_prob(logits, target).sum()
            layers = sorted(leaves)
            grads = torch.autograd.grad(prob, [leaves[l][1] for l in layers])
        for layer, grad in zip(layers, grads):
            grad_sum[layer] += grad.sum(0).float()
    mean_grad = grad_sum / steps
    return {
        "difference": ((real - base) * mean_grad).cpu().numpy(),
        "activation": (real * mean_grad).cpu().numpy(),
    }


def attribute_naive(lm: LoadedModel, ids: list[int], target: int, config: NeuronConfig) -> np.ndarray:
    """Reference: captum IG one layer at a time, the whole prompt re-run for every step."""
    device = lm.device
    site = config.activation_site
    real, base = _baseline(lm, ids, config.baseline, site)
    input_ids = torch.tensor([ids], device=device)
    scores = np.zeros(tuple(real.shape), dtype=np.float32)
    for layer in range(lm.num_layers):
        current: dict[str, torch.Tensor] = {}

        def patch(l: int, x: torch.Tensor) -> torch.Tensor:
            if l != layer:
                return x
            x = x.clone()
            x[:, -1] = current["point"].to(x.dtype)
            return x

        def forward(point: torch.Tensor) -> torch.Tensor:
            current["point"] = point
            with patch_activations(lm, patch, point.shape[0], site):
                logits = lm.model(input_ids=input_ids.expand(point.shape[0], -1)).logits[:, -1]
            return _target_prob(logits, target)

        ig = IntegratedGradients(forward)
        attr = ig.attribute(
            real[layer][None], baselines=base[layer][None], n_steps=config.steps,
            method="riemann_right", internal_batch_size=1,
        )
        scores[layer] = attr[0].detach().cpu().numpy()
    if config.ig_multiplier == "activation":  # captum multiplies by (w − w′); rescale to w
        diff = (real - base).cpu().numpy()
        scores = np.where(diff != 0, scores * real.cpu().numpy() / np.where(diff != 0, diff, 1), 0.0).astype(np.float32)
    return scores


def attribute_prompt(
    lm: LoadedModel, prompt: str, answer: str, language: str, config: NeuronConfig, naive: bool = False
) -> PromptAttribution:
    """Attribution for a prompt; multi-token answers sum over tokens, teacher-forced."""
    if not naive:
        return PromptAttribution(language, prompt, answer, attribute_prompt_all(lm, prompt, answer, language, config)[config.ig_multiplier])
    completion = encode_completion(lm, prompt, answer, language)
    total = None
    for k, target in enumerate(completion.answer_ids):
        ids = list(completion.prompt_ids) + list(completion.answer_ids[:k])
        scores = attribute_naive(lm, ids, target, config)
        total = scores if total is None else total + scores
    return PromptAttribution(language, prompt, answer, total)


def attribute_prompt_all(
    lm: LoadedModel, prompt: str, answer: str, language: str, config: NeuronConfig
) -> dict[str, np.ndarray]:
    """``attribute_prompt``'s scores under every IG multiplier (one integration)."""
    completion = encode_completion(lm, prompt, answer, language)
    total: dict[str, np.ndarray] = {}
    for k, target in enumerate(completion.answer_ids):
        ids = list(completion.prompt_ids) + list(completion.answer_ids[:k])
        for name, scores in integrate_last_token(lm, ids, target, config).items():
            total[name] = scores if name not in total else total[name] + scores
    return total


# --------------------------------------------------------------------------- fact level


def _answer_for_attribution(lm: LoadedModel, fact: Fact, language: str) -> str:
    """The true answer; for sources without one (MzsRE), the model's own greedy answer."""
    edit = fact.in_language(language).edit
    if edit.target_true:
        return edit.target_true
    completion = encode_completion(lm, edit.filled(), edit.target_new, language)
    ids = greedy_generate(lm, [completion.prompt_ids], [len(completion.answer_ids)])[0]
    return lm.tokenizer.decode(ids, skip_special_tokens=True).strip() or edit.target_new


def language_prompts(fact: Fact, language: str, config: NeuronConfig) -> list[str]:
    block = fact.in_language(language)
    prompts = [block.edit.filled()]
    if config.use_paraphrases:
        prompts += [p for p in block.paraphrase_prompts if p not in prompts]
    return prompts


class NeuronCache:
    """Prompt attributions on disk, keyed by model, prompt, answer, language and IG settings.

    A file holds the scores under every IG multiplier (``difference`` as ``scores``), so the
    multiplier, like the threshold and the language sets, can change without new IG. Under the
    files lies, read-only, the attributions memla ships for the model (``neuron_bundle``):
    a prompt found in neither is computed and written to disk."""

    ARRAYS = {"difference": "scores", "activation": "scores_activation"}

    def __init__(self, lm: LoadedModel, root: Path | None = None, bundle: NeuronBundle | None | Literal[False] = None):
        self.root = (root or cache_dir() / "neurons") / lm.key
        self.root.mkdir(parents=True, exist_ok=True)
        self.bundle = load_bundle(lm.key) if bundle is None else (bundle or None)

    @staticmethod
    def key(language: str, prompt: str, answer: str, config: NeuronConfig) -> str:
        settings = {"steps": config.steps, "baseline": config.baseline}
        if config.activation_site != "down_input":  # default keys unchanged: older caches stay valid
            settings["site"] = config.activation_site
        key = json.dumps([language, prompt, answer, settings], ensure_ascii=False, sort_keys=True)
        return hashlib.sha256(key.encode()).hexdigest()[:24]

    def _path(self, language: str, prompt: str, answer: str, config: NeuronConfig) -> Path:
        return self.root / (self.key(language, prompt, answer, config) + ".npz")

    def get(self, language: str, prompt: str, answer: str, config: NeuronConfig) -> PromptAttribution | None:
        path = self._path(language, prompt, answer, config)
        if not path.exists():
            return self._shipped(language, prompt, answer, config)
        with np.load(path) as data:
            name = self.ARRAYS[config.ig_multiplier]
            if name not in data:  # written before the multiplier switch existed
                return None
            return PromptAttribution(language, prompt, answer, data[name])

    def has(self, language: str, prompt: str, answer: str, config: NeuronConfig) -> bool:
        """Whether ``get`` would find the prompt, without reading its scores."""
        path = self._path(language, prompt, answer, config)
        if path.exists():
            with np.load(path) as data:  # lazy: reads the archive's file list only
                return self.ARRAYS[config.ig_multiplier] in data.files
        return (self.bundle is not None and config.ig_multiplier == "difference"
                and self.key(language, prompt, answer, config) in self.bundle)

    def _shipped(self, language: str, prompt: str, answer: str, config: NeuronConfig) -> PromptAttribution | None:
        if self.bundle is None or config.ig_multiplier != "difference":  # bundles ship that one only
            return None
        scores = self.bundle.get(self.key(language, prompt, answer, config))
        return None if scores is None else PromptAttribution(language, prompt, answer, scores)

    def put(self, language: str, prompt: str, answer: str, config: NeuronConfig, scores: dict[str, np.ndarray]) -> None:
        path = self._path(language, prompt, answer, config)
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, **{self.ARRAYS[k]: v for k, v in scores.items()})
        tmp.replace(path)


def find_neurons(
    lm: LoadedModel,
    fact: Fact,
    source_language: str,
    config: NeuronConfig = NeuronConfig(),
    cache: NeuronCache | None | Literal[False] = None,
    progress: ProgressFn | None = None,
) -> NeuronSets:
    """Language-specific and language-independent knowledge neurons of one fact.

    ``cache=None`` uses the on-disk cache under ``MEMLA_CACHE``; ``False`` disables it.
    """
    fact.in_language(source_language)  # clear error before any work
    independent = [code for code in config.independent_languages if code in fact.languages]
    if len(independent) < len(config.independent_languages):
        log.warning(
            "Fact %s lacks %s; language-independent neurons intersect %s only.",
            fact.example_id, sorted(set(config.independent_languages) - set(independent)), independent,
        )
    languages = list(dict.fromkeys([source_language, *independent]))
    store = NeuronCache(lm) if cache is None else (cache or None)
    jobs = [(lang, prompt) for lang in languages for prompt in language_prompts(fact, lang, config)]
    attributions: list[PromptAttribution] = []
    answers = {lang: _answer_for_attribution(lm, fact, lang) for lang in languages}
    for done, (lang, prompt) in enumerate(jobs):
        if progress:
            progress(done, len(jobs), f"{lang}: {prompt}")
        found = store.get(lang, prompt, answers[lang], config) if store else None
        if found is None:
            with lm.lock:
                scores = attribute_prompt_all(lm, prompt, answers[lang], lang, config)
            if store:
                store.put(lang, prompt, answers[lang], config, scores)
            found = PromptAttribution(lang, prompt, answers[lang], scores[config.ig_multiplier])
        attributions.append(found)
    if progress:
        progress(len(jobs), len(jobs), "done")
    per_language: dict[str, frozenset[Neuron]] = {}
    for att in attributions:
        per_language[att.language] = per_language.get(att.language, frozenset()) | att.coarse_neurons(config.threshold)
    sets = [per_language[lang] for lang in independent] or [per_language[source_language]]
    language_independent = frozenset.intersection(*sets)
    return NeuronSets(
        fact_id=fact.example_id,
        source_language=source_language,
        per_language=per_language,
        language_independent=language_independent,
        language_specific=per_language[source_language] - language_independent,
        attributions=tuple(attributions),
        config=config,
    )


def cached_neurons(
    lm: LoadedModel,
    fact: Fact,
    source_language: str,
    config: NeuronConfig = NeuronConfig(),
    cache: NeuronCache | None = None,
) -> NeuronSets | None:
    """``find_neurons`` if every prompt it needs is already attributed (on disk or shipped), else
    ``None`` without running integrated gradients: a reloaded page shows computed neurons again."""
    store = NeuronCache(lm) if cache is None else cache
    independent = [code for code in config.independent_languages if code in fact.languages]
    for lang in dict.fromkeys([source_language, *independent]):
        answer = _answer_for_attribution(lm, fact, lang)
        if not all(store.has(lang, prompt, answer, config) for prompt in language_prompts(fact, lang, config)):
            return None
    return find_neurons(lm, fact, source_language, config, cache=store)
