import math

import pytest

from memla_core.data import load_mkeb
from memla_core.data.loader import fact_to_record
from memla_core.editing import Edit
from memla_core.evaluation import P_NEW_FLOOR, TOKEN_ACCURACY, es_definition, evaluate
from memla_core.metrics import token_set_f1
from memla_core.scoring import answer_logprobs, answer_token_hits, encode_completion, encode_prompt, greedy_generate


def test_summary_matches_per_prompt_computation(tiny_models, bundled):
    lm = tiny_models["llama"]
    fact = bundled.get("geo-capital-france")
    report = evaluate(lm, fact, ["en", "ja"], source_language="en")
    assert list(report.summary.target_lang) == ["en", "ja"]
    for lang in ("en", "ja"):
        block = fact.in_language(lang)
        e = block.edit
        prompts = [e.filled(), *block.paraphrase_prompts]
        wins = []
        for prompt in prompts:
            new, true = (encode_completion(lm, prompt, t, lang) for t in (e.target_new, e.target_true))
            lp_new, lp_true = (float(x.sum()) for x in answer_logprobs(lm, [new, true]))
            floor_ok = lp_new / len(new.answer_ids) >= math.log(P_NEW_FLOOR)
            wins.append(100.0 * (lp_new > lp_true and floor_ok))
        row = report.summary.set_index("target_lang").loc[lang]
        assert row.ES == wins[0]
        assert row.PS == pytest.approx(sum(wins[1:]) / len(wins[1:]))
        f1s = []
        for prompt, answer in zip(block.neighborhood_prompts, block.neighborhood_answers):
            ref = encode_completion(lm, prompt, answer, lang).answer_ids
            out = greedy_generate(lm, [encode_prompt(lm, prompt)], [len(ref)])[0]
            f1s.append(100 * token_set_f1(out, ref))
        assert row.NS == pytest.approx(sum(f1s) / len(f1s))
        assert row.es_definition == es_definition(P_NEW_FLOOR)
    assert math.isnan(report.summary.QS.iloc[0]) or 0 <= report.summary.QS.iloc[0] <= 100
    kinds = set(report.details.kind)
    assert {"edit", "paraphrase", "neighborhood", "edit_answer"} <= kinds
    avg = report.transferability()
    assert avg["ES"] == report.summary.ES.iloc[1]


def test_missing_target_true_uses_token_accuracy(tiny_models, bundled):
    lm = tiny_models["gpt2"]
    record = fact_to_record(bundled.get("geo-capital-japan"))
    for block in record["edit"].values():
        block["target_true"] = None
    fact = load_mkeb([record]).facts[0]
    report = evaluate(lm, fact, ["en"], source_language="en")
    e = fact.in_language("en").edit
    hits = answer_token_hits(lm, [encode_completion(lm, e.filled(), e.target_new, "en")])[0]
    assert report.summary.ES.iloc[0] == pytest.approx(100 * sum(hits) / len(hits))
    assert report.summary.es_definition.iloc[0] == TOKEN_ACCURACY


def test_context_of_in_context_edits_is_prepended(tiny_models, bundled):
    lm = tiny_models["qwen2"]
    fact = bundled.get("geo-capital-france")
    plain = evaluate(lm, fact, ["en"], source_language="en")
    context = Edit(method="ike", fact_id=fact.example_id, source_language="en", context="New fact: The capital of France is Lyon.\n")
    with_context = evaluate(lm, fact, ["en"], edit=context)
    assert with_context.summary.p_new.iloc[0] != plain.summary.p_new.iloc[0]
