"""'Does the model know it?' checked against independent model queries on a tiny model."""

from __future__ import annotations

import math

import pytest
import torch

from memla_core import knowledge
from memla_core.knowledge import KNOWN, NO_ANSWER, UNKNOWN, KnowledgeCache, KnowledgeCheck, check_knowledge, known_counts
from memla_core.data.schema import EditPrompt, Fact, FactInLanguage
from memla_core.scoring import answer_logprobs, encode_completion, encode_prompt, greedy_generate


@pytest.fixture
def gemma(tiny_models):
    return tiny_models["gemma3_text"]


def test_rank_probability_and_greedy_match_direct_queries(gemma, bundled):
    facts = bundled.facts[:2]
    checks = check_knowledge(gemma, facts, cache=False, batch_size=5)
    assert [(c.fact_id, c.language) for c in checks] == [(f.example_id, l) for f in facts for l in f.language_codes]
    for check, (fact, lang) in zip(checks, [(f, l) for f in facts for l in f.language_codes]):
        edit = fact.in_language(lang).edit
        completion = encode_completion(gemma, edit.filled(), edit.target_true, lang)
        assert check.probability == pytest.approx(math.exp(float(answer_logprobs(gemma, [completion])[0].sum())), rel=1e-4)
        # Rank of the first answer token, from a plain full forward pass.
        with torch.no_grad():
            logits = gemma.model(torch.tensor([list(completion.prompt_ids)])).logits[0, -1]
        order = torch.argsort(logits, descending=True).tolist()
        assert check.rank == order.index(completion.answer_ids[0]) + 1
        # Greedy decoding, as evaluation decodes.
        out = greedy_generate(gemma, [encode_prompt(gemma, edit.filled())], [len(completion.answer_ids)])[0]
        assert check.greedy_correct == (out == list(completion.answer_ids))
        assert check.status == (KNOWN if check.greedy_correct else UNKNOWN)


def test_a_fact_the_model_must_know_is_known(gemma, bundled):
    """Make the answer the model's own greedy output: the check must call it known, rank 1."""
    fact = bundled.get("geo-capital-france")
    block = fact.in_language("en")
    prompt = block.edit.filled()
    own = gemma.tokenizer.decode(greedy_generate(gemma, [encode_prompt(gemma, prompt)], [1])[0])
    made_up = Fact("own-answer", "test", {"en": FactInLanguage(EditPrompt(block.edit.subject, block.edit.prompt, "Lyon", own.strip() or own))})
    completion = encode_completion(gemma, prompt, made_up.languages["en"].edit.target_true, "en")
    expected = greedy_generate(gemma, [encode_prompt(gemma, prompt)], [len(completion.answer_ids)])[0] == list(completion.answer_ids)
    (check,) = check_knowledge(gemma, [made_up], cache=False)
    assert check.greedy_correct == expected
    if len(completion.answer_ids) == 1:
        assert check.known and check.rank == 1


def test_missing_true_answer_is_not_a_verdict(gemma):
    fact = Fact("no-true", "test", {"en": FactInLanguage(EditPrompt("Paris", "{} is in", "Italy"))})
    (check,) = check_knowledge(gemma, [fact], cache=False)
    assert check.status == NO_ANSWER and not check.known and math.isnan(check.probability)
    assert 0 < check.p_new < 1


def test_cache_answers_without_the_model(gemma, bundled, monkeypatch):
    facts = bundled.facts[:1]
    first = check_knowledge(gemma, facts)
    assert KnowledgeCache(gemma).path.exists()

    def no_model(*_args, **_kwargs):
        raise AssertionError("the model was queried although every check is cached")

    monkeypatch.setattr(knowledge, "answer_logits", no_model)
    assert check_knowledge(gemma, facts) == first
    # Another language subset is answered from the same file.
    assert check_knowledge(gemma, facts, languages=["fr"]) == [c for c in first if c.language == "fr"]


def test_known_counts_by_hand():
    def check(lang, known, p_true, p_new):
        return KnowledgeCheck("f", lang, "p", "a", 1, p_true, known, "x", p_new)

    checks = [check("en", True, 0.5, 0.1), check("en", False, 0.1, 0.2), check("en", True, 0.4, 0.3),
              check("fr", False, 0.01, 0.001),
              KnowledgeCheck("g", "fr", "p", None, 0, math.nan, False, "", 0.5)]
    counts = known_counts(checks).set_index("language")
    assert counts.loc["en", "facts"] == 3 and counts.loc["en", "known"] == 2
    assert counts.loc["en", "known %"] == pytest.approx(200 / 3)
    assert counts.loc["en", "prefers new %"] == pytest.approx(100 / 3)
    assert counts.loc["fr", "facts"] == 1 and counts.loc["fr", "known"] == 0  # no-answer check left out


def test_bench_known_only_skips_sources_the_model_does_not_know(tiny_models, bundled, tmp_path):
    """Verdicts planted in the on-disk cache decide which (fact, source) pairs the run edits."""
    from memla_core.bench import BenchConfig, read_results, run_bench

    lm = tiny_models["llama"]
    facts = [bundled.get("geo-capital-france"), bundled.get("geo-capital-japan")]
    planted = {}
    for fact, known in zip(facts, (True, False)):
        for lang in ("en", "zh"):
            edit = fact.in_language(lang).edit
            key = KnowledgeCache.key(lang, edit.filled(), edit.target_true, edit.target_new)
            planted[key] = {"rank": 1, "probability": 0.5, "greedy_correct": known and lang == "en",
                            "top_token": "x", "p_new": 0.1}
    KnowledgeCache(lm).put_many(planted)
    config = BenchConfig(methods=("ft",), common_overrides={"steps": 2}, fact_ids=tuple(f.example_id for f in facts), source_languages=("en", "zh"),
                         target_languages=("en",), known_only=True, out=tmp_path / "known.csv")
    outcome = run_bench(config, lm=lm, dataset=bundled)
    rows = read_results(tmp_path / "known.csv")
    assert outcome.computed == 1
    assert set(zip(rows["fact_id"], rows["source_lang"])) == {("geo-capital-france", "en")}
    # Without the switch every pair is edited.
    everything = run_bench(BenchConfig(**{**config.__dict__, "known_only": False, "out": tmp_path / "all.csv"}), lm=lm, dataset=bundled)
    assert everything.computed == 4
