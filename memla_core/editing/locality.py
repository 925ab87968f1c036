"""An optional locality term for MEMLA's loss: stay close to the unedited model elsewhere.

KL(unedited ‖ edited) of the next-token distributions at every position of a few texts that are
*not* evaluation prompts: the subject alone in the source language (as ROME's essence term does)
and the last ``GENERIC_SENTENCES`` ordinary sentences of ``assets/ability/sentences.json`` in the
source language (the health check reads the first ones, so the term never trains on its probes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache

import torch

from ..models import LoadedModel
from ..paths import ASSETS_DIR
from ..scoring import project_to_logits
from .base import BatchEditRequest, EditRequest

SENTENCES_FILE = ASSETS_DIR / "ability" / "sentences.json"
GENERIC_SENTENCES = 3


@lru_cache(maxsize=None)
def generic_sentences(language: str) -> tuple[str, ...]:
    """The last few ordinary sentences in ``language`` (English where it has none)."""
    items = json.loads(SENTENCES_FILE.read_text(encoding="utf-8"))["sentences"][-GENERIC_SENTENCES:]
    return tuple(item["text"].get(language) or item["text"]["en"] for item in items)


def locality_texts(request: EditRequest | BatchEditRequest) -> list[str]:
    """The subject of each fact (one, or a batch's), then the generic sentences."""
    return [*(r.prompt.subject for r in request.requests), *generic_sentences(request.source_language)]


@dataclass
class LocalityReference:
    """The unedited model's log-distributions on the locality texts, and the batch to rerun."""

    input_ids: torch.Tensor
    mask: torch.Tensor
    positions: tuple[torch.Tensor, torch.Tensor]
    reference: torch.Tensor  # [positions, vocab] log-probabilities, unedited

    def kl(self, lm: LoadedModel) -> torch.Tensor:
        """Mean KL(unedited ‖ now) over the positions, differentiable through the current model."""
        current = _log_probs(lm, self.input_ids, self.mask, self.positions)
        return torch.sum(self.reference.exp() * (self.reference - current), dim=-1).mean()


def _log_probs(lm: LoadedModel, input_ids, mask, positions) -> torch.Tensor:
    hidden = lm.model.base_model(input_ids=input_ids, attention_mask=mask).last_hidden_state
    return torch.log_softmax(project_to_logits(lm, hidden[positions]).float(), dim=-1)


def locality_reference(lm: LoadedModel, request: EditRequest | BatchEditRequest, config=None) -> LocalityReference:
    """Encode the locality texts (right-padded) and record the unedited model's distributions."""
    tok = lm.tokenizer
    seqs = [tok(text)["input_ids"] for text in locality_texts(request)]
    width = max(len(s) for s in seqs)
    pad = tok.pad_token_id or 0
    input_ids = torch.full((len(seqs), width), pad, dtype=torch.long, device=lm.device)
    mask = torch.zeros_like(input_ids)
    rows, cols = [], []
    for r, seq in enumerate(seqs):
        input_ids[r, : len(seq)] = torch.tensor(seq, device=lm.device)
        mask[r, : len(seq)] = 1
        rows += [r] * len(seq)
        cols += list(range(len(seq)))
    positions = (torch.tensor(rows, device=lm.device), torch.tensor(cols, device=lm.device))
    with torch.no_grad():
        reference = _log_probs(lm, input_ids, mask, positions)
    return LocalityReference(input_ids, mask, positions, reference)
