"""The general-ability probe and drift (memla_core/ability) on tiny random models.

Scores and KL values are checked against sums written out by hand from the model's full logits.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from memla_core.ability import (
    AbilityConfig,
    ProbeItem,
    ProbeSet,
    build_reference,
    coarse_kl,
    drift_per_position,
    load_probe_file,
    mean_token_logprob,
    measure_ability,
    measure_unedited,
    pick,
    score_items,
)
from memla_core.ability.probe import _one_shared_position
from memla_core.data import DatasetError
from memla_core.editing.base import Edit
from memla_core.scoring import encode_completion

SENTENCES = {"en": ("The children are playing in the park.", "Please close the window."),
             "de": ("Die Bibliothek ist sonntags geschlossen.",)}


def _full_logprobs(lm, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        logits = lm.model(input_ids=torch.tensor([ids])).logits[0].float()
    return torch.log_softmax(logits, dim=-1)


def _hand_score(lm, prompt: str, choice: str, lang: str) -> float:
    """Mean log-prob per answer token, from one unbatched forward pass over prompt+answer."""
    c = encode_completion(lm, prompt, choice, lang)
    ids = list(c.prompt_ids) + list(c.answer_ids)
    logprobs = _full_logprobs(lm, ids)
    first = len(c.prompt_ids) - 1
    values = [float(logprobs[first + k, t]) for k, t in enumerate(c.answer_ids)]
    return sum(values) / len(values)


def _single_token_words(lm, prompt: str) -> tuple[str, str]:
    words = [w for w in ("a", "the", "is", "of", "in", "to", "e", "o", "i", "n") if
             len(encode_completion(lm, prompt, w, "en").answer_ids) == 1]
    assert len(words) >= 2, "the tiny tokenizer should have one-token words"
    return words[0], words[1]


# --- pure parts ----------------------------------------------------------------------------


def test_mean_token_logprob_and_pick():
    assert mean_token_logprob([-1.0, -2.0, -3.0]) == pytest.approx(-2.0)
    assert pick([-2.0, -1.5]) == 1
    assert pick([-1.0, -1.0]) == 0  # ties go to the first choice
    with pytest.raises(ValueError):
        mean_token_logprob([])


def test_coarse_kl_by_hand():
    p = torch.tensor([[0.5, 0.3]], dtype=torch.float64).log()  # kept tokens; rest 0.2
    q = torch.tensor([[0.25, 0.25]], dtype=torch.float64).log()  # rest 0.5
    expected = 0.5 * math.log(0.5 / 0.25) + 0.3 * math.log(0.3 / 0.25) + 0.2 * math.log(0.2 / 0.5)
    kl = coarse_kl(p, torch.tensor([0.2], dtype=torch.float64).log(), q, torch.tensor([0.5], dtype=torch.float64).log())
    assert float(kl) == pytest.approx(expected, rel=1e-9)
    # No rest bin (the kept tokens are the whole vocabulary): 0·log 0 counts as 0.
    kl = coarse_kl(p, torch.tensor([float("-inf")]), q, torch.tensor([0.5], dtype=torch.float64).log())
    assert float(kl) == pytest.approx(0.5 * math.log(2) + 0.3 * math.log(0.3 / 0.25), rel=1e-9)


# --- scoring on tiny models ----------------------------------------------------------------


def test_scores_match_hand_computation(tiny_lm):
    lm = tiny_lm
    prompt = "Question: How do you keep bread fresh?\nAnswer:"
    one, two = _single_token_words(lm, "Claim: the sky is blue.\nAnswer:")
    items = [
        ProbeItem("physical", "p1", "en", prompt, ("Keep it in a closed bag.", "Keep it in water."), 0),
        ProbeItem("physical", "p2", "fr", "Question : Comment ?\nRéponse :", ("Le garder au frais.", "Non."), 1),
        ProbeItem("nli", "n1", "en", "Claim: the sky is blue.\nAnswer:", (one, two), 0),
        ProbeItem("physical", "p3", "zh", "问题：怎样泡茶？\n答案：", ("把热水倒在茶叶上。", "把冷油倒在茶叶上。"), 0),
    ]
    pairs = [[encode_completion(lm, i.prompt, c, i.language) for c in i.choices] for i in items]
    assert _one_shared_position(pairs[2]) and not _one_shared_position(pairs[0])  # both code paths run
    results = score_items(lm, items, batch_size=2)
    for item, result in zip(items, results):
        hand = [_hand_score(lm, item.prompt, c, item.language) for c in item.choices]
        assert result.choice_scores == pytest.approx(hand, abs=1e-4), item.item_id
        assert result.chosen == (0 if hand[0] >= hand[1] else 1)
        assert result.correct == (result.chosen == item.answer)


def test_context_goes_before_every_prompt(tiny_models):
    lm = tiny_models["gpt2"]
    item = ProbeItem("physical", "p1", "en", "Question: How?\nAnswer:", ("Like this.", "Not at all."), 0)
    context = "New fact: Paris is in Italy.\n"
    result = score_items(lm, [item], context=context)[0]
    hand = [_hand_score(lm, context + item.prompt, c, "en") for c in item.choices]
    assert result.choice_scores == pytest.approx(hand, abs=1e-4)


# --- drift -----------------------------------------------------------------------------------


def _delta(lm, scale: float = 0.5) -> Edit:
    """A random change of the output embeddings: random tiny models are near-uniform elsewhere."""
    head = lm.model.get_output_embeddings().weight
    name, weight = next((n, p) for n, p in lm.model.named_parameters() if p is head)
    generator = torch.Generator().manual_seed(0)
    delta = scale * torch.randn(weight.shape, generator=generator)
    return Edit(method="test", fact_id="f", source_language="en", weight_deltas={name: delta})


def test_drift_is_zero_unedited_and_positive_after_a_weight_change(tiny_lm):
    lm = tiny_lm
    probe = ProbeSet((ProbeItem("physical", "p1", "en", "Question: How?\nAnswer:", ("Like this.", "No."), 0),))
    config = AbilityConfig(top_k=16, batch_size=2)
    before, reference = measure_unedited(lm, probe, SENTENCES, config)
    assert before.mean_drift == 0.0 and before.drift[0].positions > 0
    again = measure_ability(lm, probe, reference, config=config)
    assert again.mean_drift == pytest.approx(0.0, abs=1e-9)
    assert again.accuracy() == before.accuracy()
    edit = _delta(lm)
    with edit.applied(lm):
        after = measure_ability(lm, probe, reference, edit=edit, config=config)
    assert after.mean_drift > 1e-4
    assert {d.language for d in after.drift} == {"en", "de"}
    assert "test edit of f" in after.label
    table = after.table()
    assert list(table["language"]) == ["en", "de", "all"]
    assert table["drift (KL)"].iloc[-1] == pytest.approx(after.mean_drift)


def test_drift_equals_full_kl_when_top_k_covers_the_vocabulary(tiny_models):
    lm = tiny_models["llama"]
    vocab = lm.model.get_output_embeddings().weight.shape[0]
    exact_ref = build_reference(lm, SENTENCES, top_k=vocab)
    small_ref = build_reference(lm, SENTENCES, top_k=5)
    assert exact_ref.coverage == pytest.approx(1.0, abs=1e-5) and small_ref.coverage < 1.0
    before = [_full_logprobs(lm, list(exact_ref.prefix_ids) + list(ids)) for ids in exact_ref.body_ids]
    edit = _delta(lm)
    with edit.applied(lm):
        exact = drift_per_position(lm, exact_ref)
        coarse = drift_per_position(lm, small_ref)
        after = [_full_logprobs(lm, list(exact_ref.prefix_ids) + list(ids)) for ids in exact_ref.body_ids]
    first = len(exact_ref.prefix_ids) + exact_ref.first_predicted - 1
    hand = []
    for p, q, ids in zip(before, after, exact_ref.body_ids):
        rows = slice(first, len(exact_ref.prefix_ids) + len(ids) - 1)
        hand.append((p[rows].exp() * (p[rows] - q[rows])).sum(-1))
    hand = torch.cat(hand).double()
    assert exact.shape == hand.shape
    assert torch.allclose(exact, hand, atol=1e-5)
    # Coarsening can only lose information: the top-k KL never exceeds the full one.
    assert bool((coarse <= exact + 1e-6).all()) and float(coarse.sum()) > 0


def test_in_context_edit_changes_the_distributions(tiny_models):
    lm = tiny_models["gpt2"]
    reference = build_reference(lm, SENTENCES, top_k=8)
    plain = drift_per_position(lm, reference)
    with_context = drift_per_position(lm, reference, context="New fact: The capital of France is Lyon.\n")
    assert plain.shape == with_context.shape
    assert float(plain.abs().max()) < 1e-9 < float(with_context.mean())


def test_reference_of_another_model_is_refused(tiny_models):
    probe = ProbeSet((ProbeItem("physical", "p1", "en", "Q?\nA:", ("Yes.", "No."), 0),))
    _, reference = measure_unedited(tiny_models["gpt2"], probe, SENTENCES, AbilityConfig(top_k=4))
    with pytest.raises(ValueError, match="drift reference was taken on"):
        measure_ability(tiny_models["llama"], probe, reference)


# --- probe files -------------------------------------------------------------------------------


def _write(tmp_path, doc) -> str:
    path = tmp_path / "probe.json"
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    return str(path)


def test_loader_errors_name_item_language_and_field(tmp_path):
    doc = {
        "templates": {"en": {"prompt": "Q: {goal}\nA:"}, "fr": {"prompt": "Q : sans but"}},
        "items": [
            {"id": "p-1", "answer": 0, "text": {"en": {"goal": "", "choices": ["A.", "B."]}}},
            {"id": "p-2", "answer": 1, "text": {"en": {"goal": "G?", "choices": ["Same.", "same."]}}},
            {"id": "p-3", "answer": 2, "text": {"de": {"goal": "G?", "choices": ["A.", "B."]}}},
            {"id": "p-4", "answer": 0, "text": {"en": {"goal": "G?", "choices": ["A."]}}},
            {"id": "p-1", "answer": 0, "text": {"en": {"goal": "G?", "choices": ["A.", "B."]}}},
        ],
    }
    with pytest.raises(DatasetError) as err:
        load_probe_file(_write(tmp_path, doc), "physical")
    message = str(err.value)
    for expected in (
        "templates/fr.prompt: lacks {goal}",
        "p-1/en/goal: empty",
        "p-2/en/choices: both choices are 'Same.'",
        "p-3/answer: expected 0 or 1",
        "p-3/de: no template for language 'de'",
        "p-4/en/choices: expected a list of 2 strings",
        "items: duplicate ids p-1",
    ):
        assert expected in message, (expected, message)


def test_nli_loader_builds_prompts_and_checks_labels(tmp_path):
    doc = {
        "templates": {"en": {"prompt": "{premise}\nClaim: {hypothesis}\nAnswer:", "choices": ["Yes", "No"]}},
        "items": [
            {"id": "n-1", "label": "entailment", "text": {"en": {"premise": "A dog runs.", "hypothesis": "An animal runs."}}},
            {"id": "n-2", "label": "neutral", "text": {"en": {"premise": "A dog runs.", "hypothesis": "It is fast."}}},
            {"id": "n-3", "label": "not_entailment", "text": {"en": {"premise": "Same.", "hypothesis": "Same."}}},
        ],
    }
    with pytest.raises(DatasetError) as err:
        load_probe_file(_write(tmp_path, doc), "nli")
    assert "n-2/label: expected one of entailment, not_entailment, got 'neutral'" in str(err.value)
    assert "n-3/en/hypothesis: same as the premise" in str(err.value)
    doc["items"] = doc["items"][:1]
    probe = load_probe_file(_write(tmp_path, doc), "nli")
    (item,) = probe.items
    assert item.prompt == "A dog runs.\nClaim: An animal runs.\nAnswer:"
    assert item.choices == ("Yes", "No") and item.answer == 0


def test_subset_keeps_the_same_items_in_every_language():
    items = tuple(ProbeItem(task, f"{task}-{i}", lang, "p", ("a", "b"), 0)
                  for task in ("physical", "nli") for i in range(3) for lang in ("en", "de"))
    probe = ProbeSet(items)
    small = probe.subset(["de"], items_per_task=2)
    assert [(i.task, i.item_id, i.language) for i in small.items] == [
        ("physical", "physical-0", "de"), ("physical", "physical-1", "de"),
        ("nli", "nli-0", "de"), ("nli", "nli-1", "de")]
    with pytest.raises(ValueError, match="no items in th"):
        probe.subset(["th"])


def test_rest_bin_survives_float32_rounding():
    """One token holds all but ~1e-8 of the mass: 1 − Σ top rounds to 0 in float32, the rest does not."""
    from memla_core.ability.drift import rest_logprob

    logprobs = torch.log_softmax(torch.tensor([[20.0, 0.0, 0.0, 0.0]]), dim=-1)
    assert float(1 - logprobs[0, 0].exp()) == 0.0  # what the subtraction would have given
    rest = rest_logprob(logprobs, torch.tensor([[0]]))
    assert float(rest) == pytest.approx(math.log(3) - 20, abs=1e-4)
    kl = coarse_kl(logprobs[:, :1], rest, logprobs[:, :1], rest)
    assert float(kl) == pytest.approx(0.0, abs=1e-12)
