"""A session's edit stack on the shared model (memla_core/stack_session.py): its edits are applied,
in order, only while the session computes, exactly as ``EditStack`` would push them, and the
weights are bit for bit unedited outside."""

from __future__ import annotations

import math

import pytest
import torch

from memla_core.ability import AbilityConfig, ProbeItem, ProbeSet, measure_unedited
from memla_core.editing import EditError, EditRequest, EditStack, FTConfig, IkeConfig
from memla_core.session import as_scored, compute_edit, edited, evaluate_fact, generate_text
from memla_core.stack_session import SessionStack, held_share, measure_session_ability, retention_grid

from conftest import changed_since, snapshot

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.one_thread

FT = FTConfig(lr=1e-2, norm_constraint=0.05, steps=3)
LANGS = ["en", "zh"]


@pytest.fixture
def lm(tiny_models):
    return tiny_models["llama"]


@pytest.fixture
def facts(bundled):
    return bundled.get("geo-capital-france"), bundled.get("geo-capital-japan")


def _stacked(lm, facts) -> SessionStack:
    stack = SessionStack()
    for fact in facts:
        edit = compute_edit(lm, EditRequest(fact, "en"), "ft", FT, under=stack.edits)
        stack = stack.push(fact, edit)
    return stack


def test_the_stack_is_applied_in_order_only_inside_and_reverted_bit_for_bit(lm, facts):
    unedited = snapshot(lm)
    stack = _stacked(lm, facts)
    assert not changed_since(lm, unedited)  # computing on top of the stack left nothing behind
    assert [e.fact.example_id for e in stack] == ["geo-capital-france", "geo-capital-japan"]

    # The same edits pushed into an EditStack give the weights the session sees inside edited().
    reference = EditStack(lm)
    for edit in stack.edits:
        reference.push_edit(edit)
    pushed = snapshot(lm)
    reference.revert_all()
    assert not changed_since(lm, unedited)
    with edited(lm, None, stack.edits):
        assert not changed_since(lm, pushed)
    assert not changed_since(lm, unedited)

    # The second edit was computed on the model with the first applied, not on the unedited one.
    alone = compute_edit(lm, EditRequest(facts[1], "en"), "ft", FT)
    (name,) = alone.weight_deltas
    assert not torch.equal(alone.weight_deltas[name], stack.edits[1].weight_deltas[name])

    # An edit on top of the stack, and a failure inside the block: still bit for bit afterwards.
    with pytest.raises(RuntimeError, match="boom"):
        with edited(lm, alone, stack.edits):
            assert changed_since(lm, pushed)
            raise RuntimeError("boom")
    assert not changed_since(lm, unedited)

    popped = stack.pop()
    assert len(popped) == 1 and popped.edits == stack.edits[:1]
    with pytest.raises(EditError, match="empty"):
        popped.pop().pop()


def test_retention_scores_every_stacked_fact_on_the_whole_stack(lm, facts):
    unedited = snapshot(lm)
    stack = _stacked(lm, facts)
    rows = stack.retention(lm, LANGS)
    assert not changed_since(lm, unedited)
    assert list(rows["fact_id"]) == ["geo-capital-france"] * 2 + ["geo-capital-japan"] * 2
    assert list(rows["target_lang"]) == LANGS * 2 and list(rows["position"]) == [1, 1, 2, 2]
    # Each row equals evaluating that fact alone with the whole stack applied.
    first = evaluate_fact(lm, facts[0], LANGS, None, "en", under=stack.edits).summary
    assert list(rows["p_new"][:2]) == list(first["p_new"])
    grid = retention_grid(rows)
    assert list(grid.columns) == ["#", "fact", "method", "source", "en", "zh", "mean ES"]
    assert list(grid["fact"]) == ["geo-capital-france", "geo-capital-japan"]
    assert 0.0 <= held_share(rows) <= 1.0
    assert retention_grid(SessionStack().retention(lm, LANGS)).empty


def test_stacked_contexts_reach_evaluation_and_free_text(tiny_models, facts):
    lm = tiny_models["gpt2"]
    ike = IkeConfig(demonstrations=0)
    first = compute_edit(lm, EditRequest(facts[0], "en"), "ike", ike, pool=list(facts))
    stack = SessionStack().push(facts[0], first)
    second = compute_edit(lm, EditRequest(facts[1], "en"), "ike", ike, pool=list(facts), under=stack.edits)
    scored = as_scored(second, stack.edits)
    assert scored.context.startswith(first.context.removesuffix(first.context_query))
    assert scored.context.count(first.context_query) == 1 and scored.context.endswith(second.context_query)
    assert as_scored(None, stack.edits).context == first.context and as_scored(second) is second
    prompt = "The capital of France is"
    assert generate_text(lm, prompt, 3, second, stack.edits) == generate_text(lm, scored.context + prompt, 3)


def test_ability_of_the_session_model(lm, facts):
    probe = ProbeSet((
        ProbeItem("physical", "p1", "en", "To dry wet hands, use", ("a towel", "a stone"), 0),
        ProbeItem("nli", "n1", "en", "Premise: It rains. Hypothesis: The street is wet. Answer:", ("yes", "no"), 0),
    ), "test")
    config = AbilityConfig(sentences_per_language=1, languages=("en",))
    before, reference = measure_unedited(lm, probe, {"en": ("The children play in the park.",)}, config)
    unedited = snapshot(lm)
    stack = _stacked(lm, facts)
    after = measure_session_ability(lm, probe, reference, None, stack.edits, config)
    assert not changed_since(lm, unedited)
    assert after.label == "2 stacked edit(s)" and after.mean_drift > 0 and before.mean_drift == 0
    top = compute_edit(lm, EditRequest(facts[0], "zh"), "ft", FT, under=stack.edits)
    on_top = measure_session_ability(lm, probe, reference, top, stack.edits, config, label="FT-L")
    assert on_top.label == "FT-L" and not math.isnan(on_top.mean_drift)
    assert not changed_since(lm, unedited)
