"""Metric arithmetic (paper Appendix B): numbers in, numbers out, no model."""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import math


def prefers_new(logprob_new: float, logprob_true: float) -> bool:
    """ES/PS test for one prompt: P(y_new|x) > P(y_true|x) (products of token probabilities)."""
    return logprob_new > logprob_true


def clears_floor(logprob_new: float, n_tokens: int, floor: float) -> bool:
    """P(new) is not negligible: its per-token geometric mean is at least ``floor`` (0: no floor).

    A destroyed model can rank a new answer above the old one with both near zero (5e-19 against
    1.5e-20); per token, so that long answers are not held to a stricter bound than short ones.
    """
    if floor <= 0:
        return True
    return n_tokens > 0 and logprob_new / n_tokens >= math.log(floor)


def token_accuracy(hits: Sequence[bool]) -> float:
    """zsRE convention (no target_true): share of target tokens predicted, teacher-forced."""
    return sum(hits) / len(hits) if hits else 0.0


def token_set_f1(predicted: Iterable[int], reference: Iterable[int]) -> float:
    """F1 between the *sets* of predicted and reference token ids (NS and QS)."""
    pred, ref = set(predicted), set(reference)
    common = len(pred & ref)
    if not pred or not ref or common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def mean(values: Iterable[float]) -> float:
    """Mean of the non-NaN values; NaN when there are none (a metric with no prompts)."""
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else math.nan


def transferability(per_target: Mapping[str, float], source: str) -> float:
    """``<source>-avg``: mean over target languages other than the source."""
    return mean(v for lang, v in per_target.items() if lang != source)
