"""Seconds per MEMLA edit and per 12-language evaluation, against unbatched evaluation.

Neurons are computed first (disk-cached) so the edit time is the LoRA training alone. The
baseline is the same evaluation done one query at a time (one forward pass per prompt, one
``generate`` per neighbourhood prompt), which shows what batching buys on this machine.

    python benchmarks/edit_speed.py [--facts 3] [--model gemma3-270m]
    python benchmarks/edit_speed.py --per-edit   # what a benchmark/sweep pays per edit after the edit

``--after-edit`` compares what the Edit page pays after a MEMLA edit (12-language evaluation +
health check) and the 12-language evaluation alone, round 5's code path against today's,
interleaved: round 5 scored one language at a time, ran the new and the true answer after the
same prompt as two sequences, and pushed each health probe text through the model on its own,
capturing the unedited reference again for every edit; today languages go four to a pass, a
token prefix runs once, the probe texts are batched, and the ordinary sentences' reference is
captured once per model.

``--per-edit`` compares the work after each edit (12-language evaluation + health check) as the
runner did it at the start of round 3 (teacher-forced rows batched in prompt order, the health
reference captured again for every edit, the LM head fed generate's strided slice) with today's
(rows batched by length, the reference captured once per fact and shared by every
configuration, contiguous LM-head input), interleaved in one process.
"""

from __future__ import annotations

import argparse
import time

import torch

from memla_core.data import load_bundled
from memla_core.editing import EditRequest, MemlaConfig, MemlaEditor
from memla_core.evaluation import evaluate
from memla_core.models import load_model
from memla_core.neurons import find_neurons
from memla_core import scoring
from memla_core.scoring import answer_logprobs, encode_completion, encode_prompt, greedy_generate


def unbatched_evaluation(lm, fact) -> None:
    """Every query on its own: the baseline the batched evaluation is compared with."""
    for lang in fact.language_codes:
        block = fact.in_language(lang)
        e = block.edit
        for prompt in (e.filled(), *block.paraphrase_prompts):
            for target in (e.target_new, e.target_true):
                answer_logprobs(lm, [encode_completion(lm, prompt, target, lang)])
        decodes = list(zip(block.neighborhood_prompts, block.neighborhood_answers))
        decodes += [(q, block.multi_hop_new_answer) for q in block.multi_hop_questions]
        decodes.append((e.filled(), e.target_new))
        for prompt, answer in decodes:
            n = len(encode_completion(lm, prompt, answer, lang).answer_ids)
            greedy_generate(lm, [encode_prompt(lm, prompt)], [n])


def chunked_greedy_generate(lm, prompts, max_new_tokens, batch_size: int = 32):
    """Greedy decoding as it was before batching by answer length: consecutive chunks of 32, each
    decoding as many steps as its longest answer needs (the baseline of ``--decode``)."""
    out = []
    for start in range(0, len(prompts), batch_size):
        out += scoring._greedy_batch(lm, prompts[start : start + batch_size], max_new_tokens[start : start + batch_size])
    return out


def compare_decoding(lm, facts, repeats: int = 2) -> None:
    """Seconds per 12-language evaluation with decoding grouped by answer length vs chunked, in
    the same process and interleaved (the machine's load affects both alike)."""
    import memla_core.evaluation as evaluation

    grouped = evaluation.greedy_generate
    totals = {"chunked": 0.0, "grouped": 0.0}
    for _ in range(repeats):
        for fact in facts:
            for name, fn in (("chunked", chunked_greedy_generate), ("grouped", grouped)):
                evaluation.greedy_generate = fn
                t0 = time.perf_counter()
                evaluate(lm, fact)
                totals[name] += time.perf_counter() - t0
    evaluation.greedy_generate = grouped
    n = repeats * len(facts)
    print(f"evaluation: chunked decoding {totals['chunked'] / n:.1f} s, grouped by answer length "
          f"{totals['grouped'] / n:.1f} s per fact (ratio {totals['chunked'] / totals['grouped']:.2f}×)")


def prompt_order_logprobs(lm, items, batch_size: int = 32, grad: bool = False):
    """``answer_logprobs`` as it was: consecutive chunks in the given order (the ``--per-edit`` baseline)."""
    out = []
    for start in range(0, len(items), batch_size):
        out.extend(scoring._answer_logprobs_batch(lm, items[start : start + batch_size], grad))
    return out


def compare_per_edit(lm, facts, configs_per_fact: int = 4) -> None:
    """Seconds of evaluation + health check per edit, before and after this round's changes, for a
    sweep-like workload: ``configs_per_fact`` FT-L edits (different learning rates) per fact."""
    import memla_core.evaluation as evaluation
    from memla_core.editing import FTConfig, FTEditor
    from memla_core.health import capture_reference, edit_health

    fast = evaluation.answer_logprobs
    head = lm.model.get_output_embeddings()
    contiguous_hook = dict(head._forward_pre_hooks)  # hooks.contiguous_inputs, installed by load_model
    totals = {"before": 0.0, "after": 0.0}
    for fact in facts:
        edits = [FTEditor(FTConfig(lr=lr, norm_constraint=5e-3)).compute(lm, EditRequest(fact, "en"))
                 for lr in (1e-3, 2e-3, 5e-3, 1e-2)[:configs_per_fact]]
        reference = None
        for edit in edits:
            for name in ("before", "after"):
                evaluation.answer_logprobs = prompt_order_logprobs if name == "before" else fast
                head._forward_pre_hooks.clear()  # the round-3 start had no contiguous LM-head input
                if name == "after":
                    head._forward_pre_hooks.update(contiguous_hook)
                t0 = time.perf_counter()
                with edit.applied(lm):
                    evaluate(lm, fact, edit=edit)
                if name == "after" and reference is None:
                    reference = capture_reference(lm, fact, fact.language_codes)
                edit_health(lm, edit, fact, fact.language_codes, reference=reference if name == "after" else None)
                totals[name] += time.perf_counter() - t0
    evaluation.answer_logprobs = fast
    head._forward_pre_hooks.update(contiguous_hook)
    n = len(facts) * configs_per_fact
    print(f"per edit (12-language evaluation + health check, {configs_per_fact} configurations per fact): "
          f"round-3 start {totals['before'] / n:.1f} s, now {totals['after'] / n:.1f} s "
          f"(ratio {totals['before'] / totals['after']:.2f}×)")


def unshared_logprobs(lm, items, batch_size: int = 32, grad: bool = False):
    """``answer_logprobs`` as round 5 had it: every item its own row, batched by length."""
    order = sorted(range(len(items)), key=lambda i: len(items[i].prompt_ids) + len(items[i].answer_ids))
    results = {}
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            results.update(zip(batch, scoring._answer_logprobs_batch(lm, [items[i] for i in batch], grad)))
    return [results[i] for i in range(len(items))]


def compare_after_edit(lm, facts, repeats: int = 2) -> None:
    """Round 5's after-edit path against today's, per MEMLA edit, interleaved (see the docstring)."""
    import memla_core.evaluation as evaluation
    import memla_core.health as health
    from memla_core import session

    shared_logprobs, batched_probes = evaluation.answer_logprobs, health._probes

    def one_text_probes(lm_, texts, context, full):
        return [p for text in texts for p in batched_probes(lm_, [text], context, full)]

    def round5(fact, edit, langs):
        evaluation.answer_logprobs, health._probes = unshared_logprobs, one_text_probes
        try:
            t0 = time.perf_counter()
            for lang in langs:  # round 5's evaluate_fact: one language per pass
                with session.edited(lm, edit):
                    evaluate(lm, fact, [lang], edit=edit, source_language="en")
            t1 = time.perf_counter()
            session.check_edit_health(lm, fact, edit, langs)
            return t1 - t0, time.perf_counter() - t0
        finally:
            evaluation.answer_logprobs, health._probes = shared_logprobs, batched_probes

    base = session.health_reference(lm, None, [])  # the app captures it once per model

    def today(fact, edit, langs):
        t0 = time.perf_counter()
        session.evaluate_fact(lm, fact, langs, edit, "en")
        t1 = time.perf_counter()
        reference = session.health_reference(lm, fact, langs, base=base)
        session.check_edit_health(lm, fact, edit, langs, reference=reference)
        return t1 - t0, time.perf_counter() - t0

    totals = {"round 5": [0.0, 0.0], "today": [0.0, 0.0]}
    for _ in range(repeats):
        for fact in facts:
            langs = list(fact.language_codes)
            edit = MemlaEditor(MemlaConfig(), neurons=find_neurons(lm, fact, "en")).compute(lm, EditRequest(fact, "en"))
            for name, path in (("round 5", round5), ("today", today)):
                evaluation_s, total_s = path(fact, edit, langs)
                totals[name][0] += evaluation_s
                totals[name][1] += total_s
                print(f"{fact.example_id:28s} {name:8s} evaluation {evaluation_s:5.1f} s, with health check {total_s:5.1f} s",
                      flush=True)
    n = repeats * len(facts)
    (old_eval, old_total), (new_eval, new_total) = totals["round 5"], totals["today"]
    print(f"per MEMLA edit, 12 languages ({torch.get_num_threads()} threads): evaluation {old_eval / n:.1f} s → "
          f"{new_eval / n:.1f} s ({old_eval / new_eval:.2f}×); evaluation + health check {old_total / n:.1f} s → "
          f"{new_total / n:.1f} s ({old_total / new_total:.2f}×)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument("--facts", type=int, default=3)
    parser.add_argument("--decode", action="store_true",
                        help="only compare decoding grouped by answer length with the former chunked decoding")
    parser.add_argument("--after-edit", action="store_true",
                        help="only compare the Edit page's evaluation + health check per MEMLA edit with round 5's")
    parser.add_argument("--per-edit", action="store_true",
                        help="only compare the evaluation + health check per edit with the round-3 start's")
    args = parser.parse_args()
    lm = load_model(args.model)
    facts = load_bundled().facts[: args.facts]
    if args.after_edit:
        compare_after_edit(lm, facts)
        return
    if args.per_edit:
        compare_per_edit(lm, facts)
        return
    if args.decode:
        compare_decoding(lm, facts)
        return
    print(f"{'fact':32} {'neurons s':>9} {'edit s':>7} {'steps':>5} {'eval12 s':>8} {'unbatched s':>11} {'ratio':>6} {'en ES':>5}")
    sums = {"edit": 0.0, "eval": 0.0, "slow": 0.0}
    for fact in facts:
        t0 = time.perf_counter()
        neurons = find_neurons(lm, fact, "en")
        t1 = time.perf_counter()
        edit = MemlaEditor(MemlaConfig(), neurons=neurons).compute(lm, EditRequest(fact, "en"))
        t2 = time.perf_counter()
        with edit.applied(lm):
            report = evaluate(lm, fact, edit=edit)
            t3 = time.perf_counter()
            unbatched_evaluation(lm, fact)
            t4 = time.perf_counter()
        sums["edit"] += t2 - t1
        sums["eval"] += t3 - t2
        sums["slow"] += t4 - t3
        es = report.summary.set_index("target_lang").loc["en", "ES"]
        print(f"{fact.example_id:32} {t1 - t0:9.1f} {t2 - t1:7.1f} {len(edit.trace):5d} {t3 - t2:8.1f} {t4 - t3:11.1f} "
              f"{(t4 - t3) / (t3 - t2):6.1f} {es:5.0f}")
    n = len(facts)
    print(f"mean: {sums['edit'] / n:.1f} s per edit, {sums['eval'] / n:.1f} s per 12-language evaluation "
          f"({sums['slow'] / sums['eval']:.1f}× faster than unbatched)")


if __name__ == "__main__":
    main()
