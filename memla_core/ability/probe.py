"""Scoring two-choice items by likelihood.

Each choice's score is its length-normalised log-likelihood: the mean log-probability per
answer token, log P(choice | prompt) / number of choice tokens, teacher-forced. The model picks
the choice with the higher score. Normalising per token keeps a long right answer from losing to
a short wrong one merely for having more tokens (the "acc_norm"-style correction; lm-eval-harness
normalises by characters, memla by tokens because scores are compared within one tokenizer).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ..models import LoadedModel
from ..scoring import Completion, answer_logprobs, encode_completion, project_to_logits
from .items import ProbeItem


@dataclass(frozen=True)
class ItemResult:
    """How the model answered one item: each choice's mean log-prob per token, and its pick."""

    task: str
    item_id: str
    language: str
    choice_scores: tuple[float, float]
    chosen: int
    answer: int

    @property
    def correct(self) -> bool:
        return self.chosen == self.answer


def mean_token_logprob(token_logprobs: Sequence[float]) -> float:
    """The length-normalised score of one choice: mean log-probability per answer token."""
    if not len(token_logprobs):
        raise ValueError("A choice with no tokens has no score.")
    return float(sum(token_logprobs) / len(token_logprobs))


def pick(scores: Sequence[float]) -> int:
    """Index of the best-scoring choice (the first on a tie)."""
    return max(range(len(scores)), key=lambda i: (scores[i], -i))


def score_items(lm: LoadedModel, items: Sequence[ProbeItem], context: str = "", batch_size: int = 16) -> list[ItemResult]:
    """Score every item; ``context`` (an in-context edit) goes before each prompt."""
    completions = [
        [encode_completion(lm, context + item.prompt, choice, item.language) for choice in item.choices]
        for item in items
    ]
    # Both choices one token long after the same prompt: one position gives both scores.
    shared = [i for i, pair in enumerate(completions) if _one_shared_position(pair)]
    shared_set = set(shared)
    rest = [i for i in range(len(items)) if i not in shared_set]
    scores: dict[int, list[float]] = {}
    if shared:
        rows = next_token_logprobs(lm, [completions[i][0].prompt_ids for i in shared],
                                   [[c.answer_ids[0] for c in completions[i]] for i in shared], batch_size)
        scores.update({i: row for i, row in zip(shared, rows)})
    flat = [(i, c) for i in rest for c in range(2)]
    # Similar lengths batched together: less padding.
    order = sorted(range(len(flat)), key=lambda n: _length(completions[flat[n][0]][flat[n][1]]))
    logprobs = answer_logprobs(lm, [completions[flat[n][0]][flat[n][1]] for n in order], batch_size=batch_size)
    for n, lp in zip(order, logprobs):
        i, c = flat[n]
        scores.setdefault(i, [0.0, 0.0])[c] = mean_token_logprob(lp.tolist())
    return [
        ItemResult(item.task, item.item_id, item.language, tuple(scores[i]), pick(scores[i]), item.answer)
        for i, item in enumerate(items)
    ]


def _one_shared_position(pair: Sequence[Completion]) -> bool:
    return all(len(c.answer_ids) == 1 for c in pair) and pair[0].prompt_ids == pair[1].prompt_ids


def _length(c: Completion) -> int:
    return len(c.prompt_ids) + len(c.answer_ids)


def next_token_logprobs(
    lm: LoadedModel, prompts: Sequence[Sequence[int]], targets: Sequence[Sequence[int]], batch_size: int = 16
) -> list[list[float]]:
    """log P(t | prompt) for each of the ``targets`` tokens after each prompt: one position per prompt."""
    out: list[list[float]] = [[] for _ in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    device = lm.device
    pad = lm.tokenizer.pad_token_id or 0
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        width = max(len(prompts[i]) for i in chunk)
        input_ids = torch.full((len(chunk), width), pad, dtype=torch.long, device=device)
        mask = torch.zeros_like(input_ids)
        for r, i in enumerate(chunk):
            input_ids[r, : len(prompts[i])] = torch.tensor(list(prompts[i]), device=device)
            mask[r, : len(prompts[i])] = 1
        last = torch.tensor([len(prompts[i]) - 1 for i in chunk], device=device)
        with torch.no_grad():
            hidden = lm.model.base_model(input_ids=input_ids, attention_mask=mask).last_hidden_state
            picked = hidden[torch.arange(len(chunk), device=device), last]
            logprobs = torch.log_softmax(project_to_logits(lm, picked).float(), dim=-1)
        for r, i in enumerate(chunk):
            out[i] = [float(logprobs[r, t]) for t in targets[i]]
    return out
