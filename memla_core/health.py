"""Is an edited model still a language model? A check run after every edit, of every method.

ES/PS compare P(new) with P(true) and say nothing about the rest of the model: a learning rate of
1e9 destroys it and still "succeeds" (P(new) 5e-19 > P(true) 1.5e-20). Two measures catch that:

* **drift**: the mean next-token KL divergence, unedited ‖ edited, over a few ordinary sentences
  that have nothing to do with any fact (``HEALTH_PROMPTS``); a healthy edit moves them little;
* **fluency**: how much less likely the edit prompt's own words become (mean negative
  log-likelihood per token, edited − unedited), in each evaluated language.

An edit is *degenerate* when either crosses its bound in ``HealthBounds`` or when the edited
model gives NaN/inf. The general-ability measure (``memla_core/ability.py``, when present) is the
broader version of the drift; this check stays small so that it can run on every edit.
"""

from __future__ import annotations

import json
import math
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import torch

from .data.schema import Fact
from .editing.base import Edit
from .models import LoadedModel
from .paths import ASSETS_DIR
from .scoring import project_to_logits, right_padded

SENTENCES_FILE = ASSETS_DIR / "ability" / "sentences.json"
"""The general-ability work's ordinary sentences (the same 20 in each MKEB language)."""
HEALTH_SENTENCES = 2
HEALTH_LANGUAGES = ("en", "zh", "fr", "de")
"""The first two sentences in the paper's four main languages: 8 short texts, so the check costs
well under a second per edit on a CPU."""
_FALLBACK = (
    "The weather today is sunny and warm, so we decided to walk to the park.",
    "She opened the book and began to read the first chapter aloud.",
    "Le train part de la gare à huit heures tous les matins.",
    "我们明天早上一起去图书馆看书。",
)


def _health_prompts() -> tuple[str, ...]:
    try:
        sentences = json.loads(SENTENCES_FILE.read_text(encoding="utf-8"))["sentences"][:HEALTH_SENTENCES]
        return tuple(s["text"][lang] for lang in HEALTH_LANGUAGES for s in sentences if lang in s["text"])
    except (OSError, ValueError, KeyError, TypeError):  # a checkout without the asset
        return _FALLBACK


HEALTH_PROMPTS: tuple[str, ...] = _health_prompts()
"""Ordinary sentences with no entity any MKEB fact edits."""

OK = "ok"


@dataclass(frozen=True)
class HealthBounds:
    """Where an edit stops being healthy. Measured on Gemma 3 270M (geo-capital-france edited in
    English, fluency in en/fr/zh/de; docs/reliability.md): drift / worst fluency rise of sound edits
    FT-L 0.026 / +0.17, MEMLA 0.005 / +0.14, IKE 0.97 / +0 (its context prefix moves ordinary
    sentences, not its weights); MEMLA with lr=1e9 59 / +67. The bounds sit between, with room."""

    max_drift_kl: float = 4.0
    """nats: mean next-token KL(unedited ‖ edited) over ``HEALTH_PROMPTS``."""
    max_fluency_increase: float = 2.0
    """nats per token: rise of the edit prompt's negative log-likelihood in any evaluated language
    (2 nats = the prompt's words become 7 times less likely on average)."""


@dataclass(frozen=True)
class EditHealth:
    """The health of one edit: the measures, the bounds, and what crossed them."""

    drift_kl: float
    fluency_increase: dict[str, float]  # language -> nats per token
    bounds: HealthBounds = field(default_factory=HealthBounds)

    @property
    def problems(self) -> list[str]:
        found = []
        if not math.isfinite(self.drift_kl) or any(not math.isfinite(v) for v in self.fluency_increase.values()):
            found.append("the edited model gives NaN/inf")
        elif self.drift_kl > self.bounds.max_drift_kl:
            found.append(
                f"ordinary sentences drift: next-token KL {self.drift_kl:.3g} nats > {self.bounds.max_drift_kl:g}"
            )
        worst = max(self.fluency_increase.items(), key=lambda kv: kv[1], default=None)
        if worst is not None and math.isfinite(worst[1]) and worst[1] > self.bounds.max_fluency_increase:
            found.append(
                f"edit prompt ({worst[0]}) loses fluency: +{worst[1]:.3g} nats/token > "
                f"{self.bounds.max_fluency_increase:g}"
            )
        return found

    @property
    def degenerate(self) -> bool:
        return bool(self.problems)

    @property
    def label(self) -> str:
        """``ok`` or ``degenerate: <reasons>`` (the ``health`` column of benchmark rows)."""
        return OK if not self.degenerate else "degenerate: " + "; ".join(self.problems)

    def describe(self) -> str:
        fluency = max(self.fluency_increase.values(), default=0.0)
        return f"drift KL {self.drift_kl:.3g} nats, edit prompt NLL {fluency:+.3g} nats/token"


def is_degenerate(label: str) -> bool:
    """For ``health`` column values (``ok``, ``degenerate: …``, empty when not measured)."""
    return str(label).startswith("degenerate")


@dataclass(frozen=True)
class _Probe:
    text: str
    logprobs: torch.Tensor | None  # positions × vocabulary (kept only where the drift needs them)
    token_logprobs: torch.Tensor  # log P of the text's own next token at all positions but the last


@dataclass(frozen=True)
class HealthReference:
    """The unedited model's distributions on the probe texts (computed once, compared after)."""

    ordinary: tuple[_Probe, ...]
    edit_prompts: dict[str, _Probe]


def capture_reference(
    lm: LoadedModel, fact: Fact | None, languages: Sequence[str], base: HealthReference | None = None
) -> HealthReference:
    """Run the probe texts through the model as it is now (call it on the unedited model).
    ``base``: a reference captured on the same weights; its ordinary sentences, the same for
    every fact and the costly part, are reused. ``fact=None`` captures the ordinary ones alone."""
    langs = [lang for lang in dict.fromkeys(languages) if fact is not None and lang in fact.languages]
    with lm.lock:
        ordinary = base.ordinary if base is not None else tuple(_probes(lm, HEALTH_PROMPTS, "", full=True))
        prompts = _probes(lm, [fact.in_language(lang).edit.filled() for lang in langs], "", full=False)
    return HealthReference(ordinary, dict(zip(langs, prompts)))


def edit_health(
    lm: LoadedModel,
    edit: Edit,
    fact: Fact,
    languages: Sequence[str],
    bounds: HealthBounds = HealthBounds(),
    reference: HealthReference | None = None,
) -> EditHealth:
    """Measure ``edit`` against the unedited model; the model must be unedited when called (the
    edit is applied here and reverted before returning)."""
    with lm.lock:
        ref = reference or capture_reference(lm, fact, languages)
        with _applied(lm, edit):
            ordinary = _probes(lm, [p.text for p in ref.ordinary], edit.context, full=True)
            kls = [_kl(before, after) for before, after in zip(ref.ordinary, ordinary)]
            befores = list(ref.edit_prompts.values())
            afters = _probes(lm, [b.text for b in befores], edit.context, full=False)
            fluency = {}
            for lang, before, after in zip(ref.edit_prompts, befores, afters):
                n = min(len(before.token_logprobs), len(after.token_logprobs))  # tokens both read the same way
                fluency[lang] = _nll(after, n) - _nll(before, n)
    return EditHealth(sum(kls) / len(kls), fluency, bounds)


@contextmanager
def _applied(lm: LoadedModel, edit: Edit) -> Iterator[None]:
    with edit.applied(lm) if edit.weight_deltas else nullcontext():
        yield


def _probes(lm: LoadedModel, texts: Sequence[str], context: str, full: bool, batch_size: int = 8) -> list[_Probe]:
    """Log-probabilities at the positions that read each text (after ``context`` if any) and the
    position after it, texts batched right-padded (real tokens never attend to pads). With a
    context only the tail tokenised the same way is kept, so that positions compared with the
    context-free reference read the same tokens. ``full``: keep whole distributions (drift)."""
    tok = lm.tokenizer
    encoded = []
    for text in texts:
        alone = tok(text)["input_ids"]
        ids = tok(context + text)["input_ids"] if context else alone
        shared = 0
        while shared < min(len(alone), len(ids)) and alone[-1 - shared] == ids[-1 - shared]:
            shared += 1
        keep = max(min(shared, len(alone)), 1)  # positions whose next token is the text's (and the final one)
        encoded.append((ids, keep))
    probes = []
    for start in range(0, len(encoded), batch_size):
        chunk = encoded[start : start + batch_size]
        input_ids, mask = right_padded(lm, [ids for ids, _ in chunk])
        with torch.no_grad():
            hidden = lm.model.base_model(input_ids=input_ids, attention_mask=mask).last_hidden_state
            for r, (ids, keep) in enumerate(chunk):
                rows = hidden[r, len(ids) - keep : len(ids)]
                logprobs = torch.log_softmax(project_to_logits(lm, rows).float(), dim=-1)
                targets = torch.tensor(ids[len(ids) - keep + 1 :], device=logprobs.device)
                own = logprobs[:-1].gather(1, targets[:, None])[:, 0]
                probes.append(_Probe(texts[start + r], logprobs if full else None, own))
    return probes


def _kl(before: _Probe, after: _Probe) -> float:
    """Mean over shared positions of KL(before ‖ after), in nats."""
    n = min(len(before.logprobs), len(after.logprobs))
    p, q = before.logprobs[-n:], after.logprobs[-n:]
    kl = (p.exp() * (p - q)).sum(-1)
    return float(kl.mean())


def _nll(probe: _Probe, n: int) -> float:
    """Mean negative log-likelihood per token of the last ``n`` tokens of the probe's text."""
    if n == 0:
        return 0.0
    return float(-probe.token_logprobs[-n:].mean())
