import math

import pytest

from memla_core.editing import ABLATIONS, EditDivergedError, EditError, EditRequest, MemlaConfig, MemlaEditor
from memla_core.editing.memla import plan_layers, row_mask
from memla_core.neurons import NeuronConfig, NeuronSets, find_neurons
from memla_core.scoring import answer_logprobs, encode_completion

from conftest import changed_since, snapshot

IG = NeuronConfig(steps=3, threshold=0.2)


def edit_logprobs(lm, fact, lang="en"):
    e = fact.in_language(lang).edit
    new, true = (encode_completion(lm, e.filled(), t, lang) for t in (e.target_new, e.target_true))
    return [float(x.sum()) for x in answer_logprobs(lm, [new, true])]


@pytest.fixture
def france(bundled):
    return bundled.get("geo-capital-france")


def test_edit_flips_source_prompt_and_reverts_bit_exact(tiny_lm, france):
    neurons = find_neurons(tiny_lm, france, "en", IG, cache=False)
    saved = snapshot(tiny_lm)
    module_types = [type(m) for m in tiny_lm.model.modules()]
    editor = MemlaEditor(MemlaConfig(neurons=IG, lr=0.05, max_steps=60), neurons=neurons)
    edit = editor.compute(tiny_lm, EditRequest(france, "en"))
    assert not changed_since(tiny_lm, saved), "computing an edit must not change the model"
    assert [type(m) for m in tiny_lm.model.modules()] == module_types, "LoRA layers must be removed"
    lp_new, lp_true = edit_logprobs(tiny_lm, france)
    applied = edit.apply(tiny_lm)
    after_new, after_true = edit_logprobs(tiny_lm, france)
    assert after_new > lp_new
    assert after_new > after_true
    applied.revert()
    assert not changed_since(tiny_lm, saved)
    assert edit_logprobs(tiny_lm, france) == [lp_new, lp_true]


def test_delta_touches_only_masked_neurons_and_edit_layers(tiny_models, france):
    lm = tiny_models["llama"]
    neurons = find_neurons(lm, france, "en", IG, cache=False)
    edit = MemlaEditor(MemlaConfig(neurons=IG, lr=0.05, max_steps=5), neurons=neurons).compute(lm, EditRequest(france, "en"))
    allowed = NeuronSets.by_layer(neurons.language_specific | neurons.language_independent)
    assert {int(name.split(".")[2]) for name in edit.weight_deltas} == set(allowed)
    for name, delta in edit.weight_deltas.items():
        layer = int(name.split(".")[2])
        columns = (lm.adapter.as_out_in(delta) != 0).any(0).nonzero().flatten().tolist()
        assert set(columns) <= set(allowed[layer])


def test_ranks_follow_neuron_counts_and_ablations(tiny_models, france):
    lm = tiny_models["gpt2"]
    neurons = NeuronSets(
        "f", "en", {"en": frozenset()},
        language_independent=frozenset({(0, 1), (0, 2), (1, 5)}),
        language_specific=frozenset({(1, 7)}),
    )
    plans = {p.layer: p for p in plan_layers(neurons, MemlaConfig(rank_multiplier=2))}
    assert (plans[0].rank_specific, plans[0].rank_independent) == (0, 4)
    assert (plans[1].rank_specific, plans[1].rank_independent) == (2, 2)
    mask = row_mask(plans[1], 10, MemlaConfig())
    assert mask[:2].nonzero()[:, 1].unique().tolist() == [7]
    assert mask[2:].nonzero()[:, 1].unique().tolist() == [5]
    assert row_mask(plans[1], 10, MemlaConfig.ablation("w/o LSM"))[:2].all()
    assert row_mask(plans[1], 10, MemlaConfig.ablation("w/o LIM"))[2:].all()
    assert [p.layer for p in plan_layers(neurons, MemlaConfig.ablation("w/o LIE"))] == [1]
    assert all(p.rank_specific == 0 for p in plan_layers(neurons, MemlaConfig.ablation("w/o LSE")))
    assert set(ABLATIONS) == {"MEMLA", "w/o LSM", "w/o LSE", "w/o LIM", "w/o LIE"}
    with pytest.raises(ValueError, match="Unknown ablation"):
        MemlaConfig.ablation("w/o everything")


def test_diverging_edit_is_rolled_back(tiny_models, france, monkeypatch):
    import memla_core.editing.memla as memla

    lm = tiny_models["gemma3_text"]
    neurons = find_neurons(lm, france, "en", IG, cache=False)
    saved = snapshot(lm)
    real = memla.answer_logprobs
    calls = []

    def blows_up(*args, **kwargs):  # the loss turns NaN at the third step
        calls.append(1)
        out = real(*args, **kwargs)
        return [x * float("nan") for x in out] if len(calls) >= 3 else out

    monkeypatch.setattr(memla, "answer_logprobs", blows_up)
    editor = MemlaEditor(MemlaConfig(neurons=IG, lr=0.05, max_steps=20, stop_p_new=1.1, stop_loss=-1), neurons=neurons)
    with pytest.raises(EditDivergedError, match="edit rolled back") as err:
        editor.compute(lm, EditRequest(france, "en"))
    assert len(err.value.trace) == 3 and not math.isfinite(err.value.trace[-1]["loss"])
    assert not changed_since(lm, saved)
    assert all(not p.requires_grad for p in lm.model.parameters())
    assert not any("lora" in name for name, _ in lm.model.named_modules())


def test_no_neurons_is_a_clear_error(tiny_models, france):
    lm = tiny_models["bloom"]
    empty = NeuronSets("geo-capital-france", "en", {"en": frozenset()}, frozenset(), frozenset())
    with pytest.raises(EditError, match="No knowledge neurons"):
        MemlaEditor(MemlaConfig(), neurons=empty).compute(lm, EditRequest(france, "en"))


def test_non_finite_delta_is_refused_on_apply(tiny_models, france):
    lm = tiny_models["opt"]
    neurons = find_neurons(lm, france, "en", IG, cache=False)
    edit = MemlaEditor(MemlaConfig(neurons=IG, max_steps=2), neurons=neurons).compute(lm, EditRequest(france, "en"))
    saved = snapshot(lm)
    name = next(iter(edit.weight_deltas))
    edit.weight_deltas[name] = edit.weight_deltas[name].clone()
    edit.weight_deltas[name][0, 0] = float("nan")
    with pytest.raises(EditDivergedError):
        edit.apply(lm)
    assert not changed_since(lm, saved)


def test_config_validation():
    with pytest.raises(ValueError, match="rank_multiplier"):
        MemlaConfig(rank_multiplier=0)
    with pytest.raises(ValueError, match="use_lse / use_lie"):
        MemlaConfig(use_lse=False, use_lie=False)
