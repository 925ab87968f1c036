"""ES, PS, NS and QS of one edit in any set of target languages (docs/method.md §4).

Every teacher-forced query of every language goes through one batched pass, and every greedy
decode through one batched ``generate``: evaluating 12 languages costs a few forward passes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import pandas as pd

from .data.schema import Fact
from .editing.base import Edit
from .metrics import clears_floor, mean, prefers_new, token_accuracy, token_set_f1, transferability
from .models import LoadedModel
from .scoring import Completion, answer_logprobs, answer_token_hits, encode_completion, encode_prompt, greedy_generate

METRICS = ("ES", "PS", "NS", "QS")
PROB_COMPARE = "P(new)>P(true)"
"""The paper's pure ES/PS test (Appendix B); ``evaluate(..., p_new_floor=0)`` scores with it."""
TOKEN_ACCURACY = "token accuracy (zsRE)"
P_NEW_FLOOR = 1e-4
"""ES/PS count a prompt only when P(new), per answer token, is at least this (1 in 10,000: far
above chance over a 262k vocabulary, far below any answer a model actually gives)."""


class EvaluationError(RuntimeError):
    """Scores that cannot be trusted (NaN from the unedited model)."""


def es_definition(floor: float = P_NEW_FLOOR) -> str:
    """What ES/PS measured, as stored in ``es_definition``."""
    return PROB_COMPARE if floor <= 0 else f"{PROB_COMPARE}, P(new)>={floor:g}/token"


@dataclass
class EvalReport:
    """``summary``: one row per target language; ``details``: one row per prompt."""

    summary: pd.DataFrame
    details: pd.DataFrame

    def transferability(self) -> dict[str, float]:
        """``<source>-avg`` of every metric."""
        rows = self.summary
        source = rows["source_lang"].iloc[0]
        return {m: transferability(dict(zip(rows["target_lang"], rows[m])), source) for m in METRICS}


def _with_context(edit: Edit | None, text: str) -> str:
    return f"{edit.context}{text}" if edit is not None and edit.context else text


def evaluate(
    lm: LoadedModel,
    fact: Fact,
    target_languages: Sequence[str] | None = None,
    edit: Edit | None = None,
    source_language: str | None = None,
    p_new_floor: float = P_NEW_FLOOR,
) -> EvalReport:
    """Score ``fact`` on the model as it is now (apply ``edit`` first for post-edit scores;
    ``edit`` is passed so that in-context edits can put their context before each prompt).
    ``p_new_floor=0`` gives the paper's pure ES/PS (``PROB_COMPARE``)."""
    languages = list(target_languages or fact.language_codes)
    for lang in languages:
        fact.in_language(lang)
    source = source_language or (edit.source_language if edit else languages[0])
    scored: list[dict] = []  # teacher-forced queries
    decoded: list[dict] = []  # greedy queries
    for lang in languages:
        block = fact.in_language(lang)
        e = block.edit
        for kind, prompts in (("edit", [e.filled()]), ("paraphrase", list(block.paraphrase_prompts))):
            for prompt in prompts:
                text = _with_context(edit, prompt)
                row = {"target_lang": lang, "kind": kind, "prompt": prompt, "answer": e.target_new}
                row["new"] = encode_completion(lm, text, e.target_new, lang)
                row["true"] = encode_completion(lm, text, e.target_true, lang) if e.target_true else None
                scored.append(row)
        for prompt, answer in zip(block.neighborhood_prompts, block.neighborhood_answers):
            decoded.append({"target_lang": lang, "kind": "neighborhood", "prompt": prompt, "answer": answer})
        if block.multi_hop_new_answer:
            for question in block.multi_hop_questions:
                decoded.append({"target_lang": lang, "kind": "multi_hop", "prompt": question, "answer": block.multi_hop_new_answer})
        # The edit prompt is also decoded so people can read the model's answer.
        decoded.append({"target_lang": lang, "kind": "edit_answer", "prompt": e.filled(), "answer": e.target_new})

    with lm.lock:
        _score(lm, scored, p_new_floor)
        if edit is None:
            _check_finite(lm, fact, scored)
        _decode(lm, decoded, edit)

    details = pd.DataFrame(
        [{k: v for k, v in row.items() if k not in ("new", "true", "ids")} for row in scored + decoded]
    )
    summary_rows = []
    for lang in languages:
        mine = [r for r in scored if r["target_lang"] == lang]
        has_true = all(r["true"] is not None for r in mine)
        row = {"source_lang": source, "target_lang": lang}
        for metric, kind in (("ES", "edit"), ("PS", "paraphrase")):
            row[metric] = 100 * mean(r["success"] for r in mine if r["kind"] == kind)
        row["NS"] = 100 * mean(r["f1"] for r in decoded if r["target_lang"] == lang and r["kind"] == "neighborhood")
        row["QS"] = 100 * mean(r["f1"] for r in decoded if r["target_lang"] == lang and r["kind"] == "multi_hop")
        row["es_definition"] = es_definition(p_new_floor) if has_true else TOKEN_ACCURACY
        answer = next(r for r in decoded if r["target_lang"] == lang and r["kind"] == "edit_answer")
        row["answer"] = answer["generated"]
        edit_row = next(r for r in mine if r["kind"] == "edit")
        row["p_new"], row["p_true"] = edit_row["p_new"], edit_row["p_true"]
        summary_rows.append(row)
    return EvalReport(pd.DataFrame(summary_rows), details)


def _check_finite(lm: LoadedModel, fact: Fact, rows: list[dict]) -> None:
    """NaN from the unedited model is a numerical failure of the setup, not a score."""
    bad = [r for r in rows if math.isnan(r["p_new"]) or (r["true"] is not None and math.isnan(r["p_true"]))]
    if bad:
        raise EvaluationError(
            f"The unedited model gives NaN scores on {len(bad)} prompt(s) of {fact.example_id} "
            f"(dtype {lm.spec.dtype} on {lm.device}): the arithmetic overflows. Use float32 "
            "(--dtype float32), or a GPU for float16."
        )


def _score(lm: LoadedModel, rows: list[dict], floor: float) -> None:
    items: list[Completion] = [r["new"] for r in rows] + [r["true"] for r in rows if r["true"] is not None]
    logprobs = [float(lp.sum()) for lp in answer_logprobs(lm, items)]
    new_lp = iter(logprobs[: len(rows)])
    true_lp = iter(logprobs[len(rows) :])
    missing_true = [r for r in rows if r["true"] is None]
    hits = iter(answer_token_hits(lm, [r["new"] for r in missing_true])) if missing_true else iter(())
    for row in rows:
        lp_new = next(new_lp)
        row["p_new"] = math.exp(lp_new)
        if row["true"] is not None:
            lp_true = next(true_lp)
            row["p_true"] = math.exp(lp_true)
            enough = clears_floor(lp_new, len(row["new"].answer_ids), floor)
            row["success"] = float(prefers_new(lp_new, lp_true) and enough)
        else:
            row["p_true"] = math.nan
            row["success"] = token_accuracy(next(hits))


def _decode(lm: LoadedModel, rows: list[dict], edit: Edit | None) -> None:
    if not rows:
        return
    prompts, lengths, references = [], [], []
    for row in rows:
        completion = encode_completion(lm, row["prompt"], row["answer"], row["target_lang"])
        prompts.append(encode_prompt(lm, _with_context(edit, row["prompt"])))
        lengths.append(len(completion.answer_ids))
        references.append(completion.answer_ids)
    outputs = greedy_generate(lm, prompts, lengths)
    for row, out, ref in zip(rows, outputs, references):
        row["generated"] = lm.tokenizer.decode(out, skip_special_tokens=True).strip()
        row["f1"] = token_set_f1(out, ref)
