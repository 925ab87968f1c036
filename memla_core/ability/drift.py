"""Drift: how far an edit moves the model's next-token distributions on ordinary text.

drift = mean over positions of KL(P_unedited ‖ P_edited), where a position is each token of an
ordinary sentence and P is the model's distribution over the next token there (the first token
of a sentence is predicted from the BOS token alone; tokenizers without BOS start one later).

The unedited distributions are computed once and kept as a :class:`DriftReference`, so each
edited state costs one pass. Keeping whole distributions is not possible (Gemma 3: 262,144
tokens × thousands of positions would be gigabytes), so the reference keeps, per position, the
``top_k`` most likely tokens and the total probability of all others. The KL is then taken
between the two distributions coarsened to those k tokens plus one "every other token" bin. By
the data-processing inequality this is a lower bound of the full KL, equal to it when
``top_k`` covers the vocabulary (the tests check both); ``coverage`` reports how much of the
unedited probability the kept tokens hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Mapping, Sequence

import torch

from ..models import LoadedModel
from ..scoring import project_to_logits


@dataclass(frozen=True, eq=False)
class DriftReference:
    """The unedited model's next-token distributions over ordinary sentences (top-k + rest)."""

    model_key: str
    sentences: Mapping[str, tuple[str, ...]]  # language -> sentences, as measured
    body_ids: tuple[tuple[int, ...], ...]  # every sentence's tokens, languages in order
    languages: tuple[str, ...]  # language of each sentence in ``body_ids``
    prefix_ids: tuple[int, ...]  # what precedes a sentence in the unedited model (BOS or nothing)
    top_ids: torch.Tensor  # [positions, k] token ids
    top_logprobs: torch.Tensor  # [positions, k] float64
    rest_logprob: torch.Tensor  # [positions] log P(every other token), float64; -inf when none
    top_k: int

    @property
    def first_predicted(self) -> int:
        """Index of the first sentence token that has a distribution (0 with a BOS, else 1)."""
        return 0 if self.prefix_ids else 1

    def positions(self, sentence: int) -> int:
        return max(len(self.body_ids[sentence]) - self.first_predicted, 0)

    @property
    def coverage(self) -> float:
        """Mean probability the kept tokens hold under the unedited model (1.0: exact KL)."""
        return float(self.top_logprobs.exp().sum(-1).mean())


def rest_logprob(logprobs: torch.Tensor, top_ids: torch.Tensor) -> torch.Tensor:
    """log P(every token not in ``top_ids``), per position (−inf when they are the whole vocabulary).

    Summed over the other tokens themselves: 1 − Σ top would lose a small rest to rounding
    (Σ top reaches 1.0 in float32), and a rest of 0 under the edited model makes the KL infinite.
    """
    others = logprobs.double().scatter(-1, top_ids.long(), float("-inf"))
    return torch.logsumexp(others, dim=-1)


def coarse_kl(
    ref_top_logprobs: torch.Tensor, ref_rest_logprob: torch.Tensor,
    top_logprobs: torch.Tensor, rest: torch.Tensor,
) -> torch.Tensor:
    """KL(P ‖ Q) per position over the bins "each kept token" + "all other tokens" (nats).

    ``ref_*``: P's log-probabilities in those bins; ``top_logprobs``/``rest``: Q's, same bins.
    A bin P gives no mass contributes nothing (0·log 0 = 0).
    """
    p_top, q_top = ref_top_logprobs.double(), top_logprobs.double()
    kept = (p_top.exp() * (p_top - q_top)).sum(-1)
    p_rest, q_rest = ref_rest_logprob.double(), rest.double()
    has_rest = torch.isfinite(p_rest)
    other = torch.where(has_rest, p_rest.exp() * (p_rest - q_rest), torch.zeros_like(p_rest))
    return kept + other


def encode_sentences(lm: LoadedModel, sentences: Mapping[str, Sequence[str]]) -> tuple[list[list[int]], list[str]]:
    """Tokens of every sentence without special tokens, and each one's language."""
    body, owners = [], []
    for lang, texts in sentences.items():
        for text in texts:
            body.append(lm.tokenizer(text, add_special_tokens=False)["input_ids"])
            owners.append(lang)
    return body, owners


def sentence_logprobs(
    lm: LoadedModel, body_ids: Sequence[Sequence[int]], prefix_ids: Sequence[int], first_predicted: int,
    batch_size: int = 16,
) -> Iterator[torch.Tensor]:
    """For each sentence in order: log-probs [positions, vocab] predicting its tokens after ``prefix_ids``.

    Sentences are batched (right padding: real tokens never attend to pads); the vocabulary
    projection runs one sentence at a time, so memory stays at positions × vocab.
    """
    device = lm.device
    pad = lm.tokenizer.pad_token_id or 0
    for start in range(0, len(body_ids), batch_size):
        chunk = body_ids[start : start + batch_size]
        seqs = [list(prefix_ids) + list(ids[:-1]) for ids in chunk]  # the last token predicts nothing needed
        width = max(max(len(s) for s in seqs), 1)
        input_ids = torch.full((len(seqs), width), pad, dtype=torch.long, device=device)
        mask = torch.zeros_like(input_ids)
        for r, seq in enumerate(seqs):
            if seq:
                input_ids[r, : len(seq)] = torch.tensor(seq, device=device)
                mask[r, : len(seq)] = 1
        with torch.no_grad():
            hidden = lm.model.base_model(input_ids=input_ids, attention_mask=mask).last_hidden_state
            for r, ids in enumerate(chunk):
                # position p predicts sequence token p+1; sentence token j sits at len(prefix)+j.
                first = len(prefix_ids) + first_predicted - 1
                positions = torch.arange(first, len(prefix_ids) + len(ids) - 1, device=device)
                logits = project_to_logits(lm, hidden[r, positions]).float()
                yield torch.log_softmax(logits, dim=-1).cpu()


def build_reference(
    lm: LoadedModel, sentences: Mapping[str, Sequence[str]], top_k: int = 1024, batch_size: int = 16
) -> DriftReference:
    """Run the (unedited) model over ``sentences`` once and keep each position's top-k tokens."""
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}.")
    body, owners = encode_sentences(lm, sentences)
    empty = [i for i, ids in enumerate(body) if len(ids) < 2]
    if empty:
        raise ValueError(f"Sentence {empty[0]} of language {owners[empty[0]]} has fewer than 2 tokens; drift needs longer text.")
    prefix = list(lm.tokenizer("")["input_ids"])
    first = 0 if prefix else 1
    ids, values, rests = [], [], []
    for logprobs in sentence_logprobs(lm, body, prefix, first, batch_size):
        k = min(top_k, logprobs.shape[-1])
        top = torch.topk(logprobs, k, dim=-1)
        ids.append(top.indices.to(torch.int32))
        values.append(top.values.double())
        rests.append(rest_logprob(logprobs, top.indices))
    vocab = logprobs.shape[-1]
    return DriftReference(
        model_key=lm.key,
        sentences={lang: tuple(texts) for lang, texts in sentences.items()},
        body_ids=tuple(tuple(b) for b in body),
        languages=tuple(owners),
        prefix_ids=tuple(prefix),
        top_ids=torch.cat(ids),
        top_logprobs=torch.cat(values),
        rest_logprob=torch.cat(rests),
        top_k=min(top_k, vocab),
    )


def drift_per_position(
    lm: LoadedModel, reference: DriftReference, context: str = "", batch_size: int = 16
) -> torch.Tensor:
    """KL(unedited ‖ current model) at every reference position (one pass over the sentences).

    ``context`` (an in-context edit's prefix) is put before every sentence in place of the BOS.
    """
    prefix = list(lm.tokenizer(context)["input_ids"]) if context else list(reference.prefix_ids)
    out, offset = [], 0
    for logprobs in sentence_logprobs(lm, reference.body_ids, prefix, reference.first_predicted, batch_size):
        n = logprobs.shape[0]
        rows = slice(offset, offset + n)
        top_ids = reference.top_ids[rows].long()
        top = logprobs.gather(-1, top_ids).double()
        out.append(coarse_kl(reference.top_logprobs[rows], reference.rest_logprob[rows], top, rest_logprob(logprobs, top_ids)))
        offset += n
    if offset != reference.top_ids.shape[0]:
        raise RuntimeError("The model produced a different number of positions than the reference; "
                           "was the reference built with another tokenizer?")
    return torch.cat(out)
