"""The authors'-code switches and the locality term: each changes exactly what it says."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from memla_core.editing import EditRequest, MemlaConfig, MemlaEditor
from memla_core.neurons import NeuronConfig, attribute_last_token, attribute_prompt, find_neurons, last_position_activations
from memla_core.scoring import encode_completion

IG = NeuronConfig(steps=3, threshold=0.2)


@pytest.fixture
def france(bundled):
    return bundled.get("geo-capital-france")


def _edit(lm, fact, **changes):
    neurons = find_neurons(lm, fact, "en", IG, cache=False)
    config = MemlaConfig(**{"neurons": IG, "lr": 0.05, "max_steps": 4, "stop_p_new": 1.1, **changes})
    return MemlaEditor(config, neurons=neurons).compute(lm, EditRequest(fact, "en"))


def test_scale_in_training_off_trains_at_one_and_applies_c(tiny_models, france):
    lm = tiny_models["llama"]
    at_one = _edit(lm, france, coefficient=1.0)
    authors = _edit(lm, france, coefficient=0.5, scale_in_training=False)
    assert [r["loss"] for r in authors.trace] == [r["loss"] for r in at_one.trace]  # same training
    for name, delta in at_one.weight_deltas.items():
        assert torch.equal(authors.weight_deltas[name], delta * 0.5)
    assert authors.details["lora_config"].alpha_pattern  # exported adapter carries c, not 1
    for name, alpha in authors.details["lora_config"].alpha_pattern.items():
        assert alpha == pytest.approx(0.5 * authors.details["lora_config"].rank_pattern[name])
    memla_default = _edit(lm, france, coefficient=0.5)
    assert [r["loss"] for r in memla_default.trace] != [r["loss"] for r in authors.trace]


def test_lora_zero_factor_changes_only_the_initialisation(tiny_models, france):
    lm = tiny_models["gpt2"]
    b_zero = _edit(lm, france)
    a_zero = _edit(lm, france, lora_zero_factor="A")
    # both start as a no-op: the unedited probability at step 0
    assert a_zero.trace[0]["p_new"] == pytest.approx(b_zero.trace[0]["p_new"], rel=1e-6)
    assert any(not torch.equal(a_zero.weight_deltas[k], b_zero.weight_deltas[k]) for k in b_zero.weight_deltas)
    with pytest.raises(ValueError, match="lora_zero_factor"):
        MemlaConfig(lora_zero_factor="C")


def test_locality_term_starts_at_zero_and_holds_the_model_closer(tiny_models, france):
    lm = tiny_models["llama"]
    plain = _edit(lm, france, lr=0.2)
    local = _edit(lm, france, lr=0.2, locality_weight=50.0)
    assert "locality_kl" not in plain.trace[0]
    assert local.trace[0]["locality_kl"] == pytest.approx(0.0, abs=1e-6)  # the edit starts as a no-op
    from memla_core.editing.locality import locality_reference

    reference = locality_reference(lm, EditRequest(france, "en"))
    kls = []
    for edit in (plain, local):
        with edit.applied(lm), torch.no_grad():
            kls.append(float(reference.kl(lm)))
    assert kls[1] < kls[0]
    with pytest.raises(ValueError, match="locality_weight"):
        MemlaConfig(locality_weight=-1)


def test_ig_multiplier_activation_is_w_times_mean_gradient(tiny_models):
    lm = tiny_models["gpt2"]
    completion = encode_completion(lm, "The capital of France is", "Paris", "en")
    ids, target = list(completion.prompt_ids), completion.answer_ids[0]
    zero = NeuronConfig(steps=4, baseline="zero")
    # with a zero baseline w − w′ = w: both multipliers agree exactly
    np.testing.assert_array_equal(
        attribute_last_token(lm, ids, target, zero),
        attribute_last_token(lm, ids, target, NeuronConfig(steps=4, baseline="zero", ig_multiplier="activation")),
    )
    eos = NeuronConfig(steps=4, baseline="eos")
    diff = attribute_last_token(lm, ids, target, eos)
    act = attribute_last_token(lm, ids, target, NeuronConfig(steps=4, baseline="eos", ig_multiplier="activation"))
    assert not np.allclose(diff, act)
    # both are the same mean gradient times their multiplier: act·(w − w′) = diff·w
    real = last_position_activations(lm, torch.tensor([ids]))[0].numpy()
    from memla_core.neurons import _baseline

    _, base = _baseline(lm, ids, "eos")
    np.testing.assert_allclose(act * (real - base.numpy()), diff * real, rtol=1e-4, atol=1e-9)
    # the naive (captum) reference agrees under the activation multiplier too
    naive = attribute_prompt(lm, "The capital of France is", "Paris", "en",
                             NeuronConfig(steps=4, baseline="eos", ig_multiplier="activation"), naive=True)
    fast = attribute_prompt(lm, "The capital of France is", "Paris", "en",
                            NeuronConfig(steps=4, baseline="eos", ig_multiplier="activation"))
    np.testing.assert_allclose(fast.scores, naive.scores, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("arch", ["gpt2", "llama", "opt"])
def test_activation_site_up_output_reads_the_up_projection(tiny_models, arch):
    lm = tiny_models[arch]
    ids = torch.tensor([encode_completion(lm, "The capital of France is", "Paris", "en").prompt_ids])
    captured = {}
    module = lm.adapter.up_proj_module(lm.model, 0)
    handle = module.register_forward_hook(lambda _m, _a, out: captured.setdefault("up", out.detach()))
    try:
        acts = last_position_activations(lm, ids, site="up_output")
    finally:
        handle.remove()
    up = captured["up"].reshape(1, -1, captured["up"].shape[-1])[0, -1]
    assert torch.allclose(acts[0, 0], up.float())
    assert not torch.allclose(acts[0, 0], last_position_activations(lm, ids)[0, 0])
    config = NeuronConfig(steps=3, baseline="zero", activation_site="up_output")
    fast = attribute_prompt(lm, "The capital of France is", "Paris", "en", config)
    naive = attribute_prompt(lm, "The capital of France is", "Paris", "en", config, naive=True)
    np.testing.assert_allclose(fast.scores, naive.scores, rtol=1e-3, atol=1e-6)
