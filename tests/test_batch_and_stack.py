"""Batch edits (k facts in one Edit) and the edit stack (edits one after another), on the tiny
models. As in test_baselines, the locate-and-edit requests end with the subject so that a
random 2-layer model can learn them at all; what such a model learns is the answer's first
token (the one the subject's last token predicts), so that is the probability checked here."""

from __future__ import annotations

import pytest
import torch

from memla_core.data.schema import EditPrompt, Fact, FactInLanguage, MissingLanguageError
from memla_core.editing import (
    METHODS,
    BatchEditRequest,
    BatchNotSupportedError,
    EditError,
    EditRequest,
    EditStack,
    FTConfig,
    FTEditor,
    IkeConfig,
    IkeEditor,
    MemitConfig,
    MemitEditor,
    MemlaConfig,
    MemlaEditor,
    MethodSpec,
    PmetConfig,
    PmetEditor,
    RomeConfig,
    RomeEditor,
    batchable_methods,
    build_editor,
    compute_request,
)
from memla_core.editing.memla import union_of_neurons
from memla_core.editing.stack import stacked_context
from memla_core.evaluation import evaluate
from memla_core.export import has_adapter, save_adapter
from memla_core.neurons import NeuronConfig, NeuronSets, find_neurons
from memla_core.scoring import answer_logprobs, encode_completion

from conftest import changed_since, snapshot
from test_baselines import FAST, assert_same

IG = NeuronConfig(steps=3, threshold=0.2)

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.one_thread


def subject_last(fact_id: str, subject: str, prompt: str, new: str, true: str) -> Fact:
    return Fact(fact_id, "capital", {"en": FactInLanguage(EditPrompt(subject, prompt, new, true))})


FACTS = (
    subject_last("t-france", "France", "The capital city of {}", "Lyon", "Paris"),
    subject_last("t-germany", "Germany", "The capital city of {}", "Munich", "Berlin"),
    subject_last("t-spain", "Spain", "The largest city of {}", "Seville", "Madrid"),
)

EDITORS = {
    "ft": lambda: FTEditor(FTConfig(lr=1e-2, norm_constraint=0.05, steps=30)),
    "memit": lambda: MemitEditor(MemitConfig(layers=(0, 1), mom2_update_weight=1.0, **FAST)),
    "pmet": lambda: PmetEditor(PmetConfig(layers=(0, 1), mom2_update_weight=1.0, **FAST)),
}


def p_new(lm, fact: Fact, context: str = "") -> float:
    """P(first token of the new answer | prompt)."""
    e = fact.in_language("en").edit
    (lp,) = answer_logprobs(lm, [encode_completion(lm, context + e.filled(), e.target_new, "en")])
    return float(lp[0].exp())


# --------------------------------------------------------------------------- requests and the registry


def test_batch_request_is_typed_and_checked(bundled):
    batch = BatchEditRequest([FACTS[0], FACTS[1]], "en")  # a list is kept as a tuple
    assert batch.facts == FACTS[:2] and len(batch) == 2
    assert batch.fact_id == "t-france+t-germany" and batch.fact_ids == ("t-france", "t-germany")
    assert [r.fact for r in batch.requests] == list(FACTS[:2]) and batch.requests[0].source_language == "en"
    single = EditRequest(FACTS[0], "en")
    assert single.requests == (single,) and single.fact_ids == ("t-france",)
    with pytest.raises(ValueError, match="empty"):
        BatchEditRequest((), "en")
    with pytest.raises(ValueError, match="'t-france' more than once"):
        BatchEditRequest((FACTS[0], FACTS[1], FACTS[0]), "en")
    with pytest.raises(MissingLanguageError, match="'t-france' has no 'de' version"):
        BatchEditRequest((bundled.get("geo-capital-france"), FACTS[0]), "de")


def test_registry_says_which_methods_batch():
    assert set(batchable_methods()) == {"memla", "ft", "memit", "pmet", "ike"}
    assert not METHODS["rome"].batchable and not METHODS["mend"].batchable
    METHODS["memit"].check_batchable()
    for name in ("rome", "mend"):
        with pytest.raises(BatchNotSupportedError) as info:
            METHODS[name].check_batchable()
        message = str(info.value)
        assert METHODS[name].title in message and "one fact at a time" in message
        assert all(f"({able})" in message for able in batchable_methods())
    with pytest.raises(TypeError, match="has no compute_batch"):
        MethodSpec("rome2", "ROME 2", RomeConfig, RomeEditor, "", batchable=True)
    with pytest.raises(TypeError, match="set batchable=True"):
        MethodSpec("ft2", "FT 2", FTConfig, FTEditor, "")


@pytest.mark.parametrize("method", ["rome", "mend"])
def test_methods_that_cannot_batch_refuse_before_any_work(tiny_models, method):
    lm = tiny_models["llama"]
    before = snapshot(lm)
    with pytest.raises(BatchNotSupportedError, match=r"methods that can: MEMLA \(memla\), FT-L \(ft\)"):
        compute_request(build_editor(method), lm, BatchEditRequest(FACTS[:2], "en"))
    stack = EditStack(lm)
    with pytest.raises(BatchNotSupportedError):
        stack.push(build_editor(method), BatchEditRequest(FACTS[:2], "en"))
    assert len(stack) == 0
    assert_same(lm, before)


# --------------------------------------------------------------------------- batch edits


@pytest.mark.parametrize("method", sorted(EDITORS))
def test_batch_edit_applies_and_reverts_exactly(tiny_lm, method):
    batch = BatchEditRequest(FACTS[:2], "en")
    before = snapshot(tiny_lm)
    steps = []
    edit = EDITORS[method]().compute_batch(tiny_lm, batch, on_step=steps.append)
    assert_same(tiny_lm, before)  # computing leaves the model as it was
    assert edit.fact_id == "t-france+t-germany" and edit.fact_ids == batch.fact_ids
    assert edit.weight_deltas and all(torch.isfinite(d).all() for d in edit.weight_deltas.values())
    if method != "ft":  # one value optimisation per fact, each traced with its fact
        assert {r["fact"] for r in steps} == {0, 1} == {r["fact"] for r in edit.trace}
    p_before = [p_new(tiny_lm, f) for f in batch.facts]
    with edit.applied(tiny_lm):
        p_after = [p_new(tiny_lm, f) for f in batch.facts]
    assert_same(tiny_lm, before)
    assert all(a > b for a, b in zip(p_after, p_before)), f"{method}: P(new) {p_before} -> {p_after}"


@pytest.mark.parametrize("method", sorted(EDITORS))
def test_batch_of_three_raises_each_new_answer(tiny_models, method):
    lm = tiny_models["llama"]
    batch = BatchEditRequest(FACTS, "en")
    before = snapshot(lm)
    edit = EDITORS[method]().compute_batch(lm, batch)
    p_before = [p_new(lm, f) for f in FACTS]
    with edit.applied(lm):
        p_after = [p_new(lm, f) for f in FACTS]
    assert_same(lm, before)
    assert all(a > b for a, b in zip(p_after, p_before)), f"{method}: P(new) {p_before} -> {p_after}"


@pytest.mark.parametrize("method", sorted(EDITORS))
def test_batch_of_one_is_the_single_edit(tiny_models, method):
    lm = tiny_models["gemma3_text"]  # MEMIT's Newton solve included
    single = EDITORS[method]().compute(lm, EditRequest(FACTS[0], "en"))
    batch = EDITORS[method]().compute_batch(lm, BatchEditRequest(FACTS[:1], "en"))
    assert batch.fact_id == single.fact_id and batch.trace == single.trace
    assert single.weight_deltas.keys() == batch.weight_deltas.keys()
    assert all(torch.equal(single.weight_deltas[n], batch.weight_deltas[n]) for n in single.weight_deltas)


def test_memla_batch_uses_the_union_of_neurons_and_exports(tiny_lm, bundled, tmp_path):
    facts = (bundled.get("geo-capital-france"), bundled.facts[1])
    sets = [find_neurons(tiny_lm, f, "en", IG, cache=False) for f in facts]
    union = union_of_neurons(sets, "+".join(f.example_id for f in facts))
    assert union.language_independent == sets[0].language_independent | sets[1].language_independent
    assert not union.language_specific & union.language_independent
    before = snapshot(tiny_lm)
    editor = MemlaEditor(MemlaConfig(neurons=IG, lr=0.05, max_steps=20), neurons=union)
    edit = editor.compute_batch(tiny_lm, BatchEditRequest(facts, "en"))
    assert_same(tiny_lm, before)
    assert edit.details["neurons"] is union and edit.fact_ids == tuple(f.example_id for f in facts)
    allowed = NeuronSets.by_layer(union.language_specific | union.language_independent)
    layer_of = {f"{tiny_lm.adapter.down_proj_name(l)}.weight": l for l in range(tiny_lm.num_layers)}
    assert {layer_of[name] for name in edit.weight_deltas} == set(allowed)
    for name, delta in edit.weight_deltas.items():
        columns = (tiny_lm.adapter.as_out_in(delta) != 0).any(0).nonzero().flatten().tolist()
        assert set(columns) <= set(allowed[layer_of[name]])
    prompts = [f.in_language("en").edit for f in facts]
    items = [encode_completion(tiny_lm, e.filled(), e.target_new, "en") for e in prompts]
    lp_before = [float(x.sum()) for x in answer_logprobs(tiny_lm, items)]
    with edit.applied(tiny_lm):
        lp_after = [float(x.sum()) for x in answer_logprobs(tiny_lm, items)]
    assert_same(tiny_lm, before)
    assert all(a > b for a, b in zip(lp_after, lp_before)), f"log P(new) {lp_before} -> {lp_after}"
    assert has_adapter(edit) and (save_adapter(edit, tmp_path) / "adapter_model.safetensors").exists()


def test_memla_batch_finds_each_facts_neurons_and_batch_of_one_is_single(tiny_models, bundled):
    lm = tiny_models["qwen2"]
    france, other = bundled.get("geo-capital-france"), bundled.facts[1]
    known = find_neurons(lm, france, "en", IG, cache=False)
    config = MemlaConfig(neurons=IG, lr=0.05, max_steps=3)
    single = MemlaEditor(config, neurons=known).compute(lm, EditRequest(france, "en"))
    one = MemlaEditor(config, neurons=known).compute_batch(lm, BatchEditRequest([france], "en"))
    assert single.trace == one.trace
    assert all(torch.equal(single.weight_deltas[n], one.weight_deltas[n]) for n in single.weight_deltas)
    # Neurons given for one fact of the batch are used for it; the other fact's are found.
    two = MemlaEditor(config, neurons=known).compute_batch(lm, BatchEditRequest([france, other], "en"))
    found = find_neurons(lm, other, "en", IG)
    assert two.details["neurons"].language_independent == known.language_independent | found.language_independent


@pytest.mark.parametrize("arch", ["gpt2", "gemma3_text"])
def test_ike_batch_states_every_fact_once(tiny_models, arch, bundled):
    tiny_lm = tiny_models[arch]
    facts = (bundled.get("geo-capital-france"), bundled.facts[1])
    before = snapshot(tiny_lm)
    edit = IkeEditor(IkeConfig(demonstrations=1)).compute_batch(tiny_lm, BatchEditRequest(facts, "en"))
    assert not edit.weight_deltas and edit.context.endswith("Prompt: ") and edit.context_query == "Prompt: "
    statements = [f"New fact: {f.in_language('en').edit.filled()} {f.in_language('en').edit.target_new}." for f in facts]
    assert all(edit.context.count(s) == 1 for s in statements)
    assert edit.context.count("New fact:") == 3  # one demonstration, two facts
    assert not set(edit.details["demonstrations_from"]) & set(edit.fact_ids)
    plain = evaluate(tiny_lm, facts[1], ["en"])
    in_context = evaluate(tiny_lm, facts[1], ["en"], edit=edit)
    assert_same(tiny_lm, before)
    assert not plain.summary.p_new.equals(in_context.summary.p_new)


# --------------------------------------------------------------------------- the edit stack


def test_stack_push_pop_and_revert_all_are_exact(tiny_lm):
    stack = EditStack(tiny_lm)
    states = [snapshot(tiny_lm)]
    ft = FTEditor(FTConfig(lr=1e-2, norm_constraint=0.05, steps=5))
    rome = RomeEditor(RomeConfig(**{**FAST, "v_steps": 5}))
    memit = MemitEditor(MemitConfig(layers=(0, 1), mom2_update_weight=1.0, **{**FAST, "v_steps": 5}))
    pushes = [
        (ft, EditRequest(FACTS[0], "en")),
        (rome, EditRequest(FACTS[1], "en")),  # a method that cannot batch stacks too
        (IkeEditor(IkeConfig(demonstrations=0), pool=FACTS), EditRequest(FACTS[2], "en")),
        (memit, BatchEditRequest(FACTS[:2], "en")),
        (ft, EditRequest(FACTS[0], "en")),  # the same layer again, on top of its earlier edit
    ]
    for editor, request in pushes:
        stack.push(editor, request)
        states.append(snapshot(tiny_lm))
    assert len(stack) == 5 and [e.method for e in stack] == ["ft", "rome", "ike", "memit", "ft"]
    assert stack.fact_ids == ("t-france", "t-germany", "t-spain", "t-france", "t-germany", "t-france")
    assert changed_since(tiny_lm, states[0])
    assert stack.pop().method == "ft"
    assert not changed_since(tiny_lm, states[4])
    assert stack.pop().method == "memit"
    assert not changed_since(tiny_lm, states[3])
    assert [e.method for e in stack.revert_all()] == ["ike", "rome", "ft"]
    assert len(stack) == 0 and stack.evaluation_edit() is None
    assert_same(tiny_lm, states[0])
    with pytest.raises(EditError, match="empty"):
        stack.pop()


def test_stack_computes_each_edit_on_the_edited_model(tiny_models):
    lm = tiny_models["llama"]
    ft = FTEditor(FTConfig(lr=1e-2, norm_constraint=0.05, steps=5))
    second = EditRequest(FACTS[1], "en")
    on_unedited = ft.compute(lm, second)
    stack = EditStack(lm)
    stack.push(ft, EditRequest(FACTS[0], "en"))
    stacked = stack.push(ft, second)
    stack.revert_all()
    (name,) = stacked.weight_deltas
    assert not torch.equal(stacked.weight_deltas[name], on_unedited.weight_deltas[name])


def test_in_context_edits_stack_their_contexts(tiny_models):
    lm = tiny_models["gpt2"]
    ike = IkeEditor(IkeConfig(demonstrations=0), pool=FACTS)
    stack = EditStack(lm)
    first = stack.push(ike, EditRequest(FACTS[0], "en"))
    assert stack.context == first.context
    stack.push(FTEditor(FTConfig(lr=1e-2, norm_constraint=0.05, steps=3)), EditRequest(FACTS[2], "en"))
    stack.push(ike, EditRequest(FACTS[1], "en"))
    batch = ike.compute_batch(lm, BatchEditRequest(FACTS[:2], "en"))
    assert stack.context == batch.context  # "New fact: A.\nNew fact: B.\nPrompt: "
    assert stack.context.count("Prompt: ") == 1 and stack.context.endswith("Prompt: ")
    view = stack.evaluation_edit()
    assert view.context == stack.context and not view.weight_deltas and view.source_language == "en"
    with_stack = p_new(lm, FACTS[1], view.context)
    assert with_stack != p_new(lm, FACTS[1])
    stack.revert_all()
    assert stacked_context([]) == "" and stack.context == ""
