import numpy as np
import pytest

from memla_core.neurons import (
    NeuronCache,
    NeuronConfig,
    PromptAttribution,
    attribute_prompt,
    cached_neurons,
    find_neurons,
)

FAST = NeuronConfig(steps=4, threshold=0.2)


@pytest.mark.parametrize("baseline", ["eos", "zero"])
def test_batched_ig_matches_captum_reference(tiny_lm, baseline):
    config = NeuronConfig(steps=3, baseline=baseline, max_batch_rows=5)  # chunks split layers
    fast = attribute_prompt(tiny_lm, "The capital of France is", "Paris", "en", config)
    slow = attribute_prompt(tiny_lm, "The capital of France is", "Paris", "en", config, naive=True)
    assert fast.scores.shape == (tiny_lm.num_layers, tiny_lm.num_neurons)
    assert np.abs(fast.scores).max() > 0
    np.testing.assert_allclose(fast.scores, slow.scores, rtol=1e-3, atol=1e-7)


def test_ig_completeness_zero_baseline(tiny_models):
    """With many steps, a layer's attributions sum to P(real) − P(baseline) for that layer
    (integrated gradients' completeness axiom)."""
    import torch

    from memla_core.neurons import patch_activations, attribute_last_token

    lm = tiny_models["llama"]
    ids = lm.tokenizer("The capital of France is")["input_ids"]
    with torch.no_grad():
        probs = lm.model(input_ids=torch.tensor([ids])).logits[0, -1].softmax(-1)
    target = int(probs.argmax())
    scores = attribute_last_token(lm, ids, target, NeuronConfig(steps=200, baseline="zero"))
    for layer in range(lm.num_layers):

        def zero_last(l, x, layer=layer):
            if l != layer:
                return x
            x = x.clone()
            x[:, -1] = 0
            return x

        with torch.no_grad(), patch_activations(lm, zero_last, 1):
            p_zero = lm.model(input_ids=torch.tensor([ids])).logits[0, -1].softmax(-1)[target]
        assert scores[layer].sum() == pytest.approx(float(probs[target] - p_zero), rel=0.03, abs=1e-6)


def test_coarse_neurons_adaptive_threshold():
    scores = np.array([[0.1, 1.0, 0.31], [-2.0, 0.3, 0.29]], dtype=np.float32)
    att = PromptAttribution("en", "p", "a", scores)
    assert att.coarse_neurons(0.3) == {(0, 1), (0, 2)}
    assert PromptAttribution("en", "p", "a", -np.abs(scores)).coarse_neurons(0.3) == frozenset()


def test_neuron_sets_are_unions_and_intersections(tiny_models, bundled):
    lm = tiny_models["gpt2"]
    fact = bundled.get("geo-capital-france")
    sets = find_neurons(lm, fact, "de", FAST, cache=False)
    assert set(sets.per_language) == {"de", "en", "zh", "fr"}
    unions = {}
    for att in sets.attributions:
        unions.setdefault(att.language, set()).update(att.coarse_neurons(FAST.threshold))
    assert {k: frozenset(v) for k, v in unions.items()} == sets.per_language
    assert sets.language_independent == sets.per_language["en"] & sets.per_language["zh"] & sets.per_language["fr"]
    assert sets.language_specific == sets.per_language["de"] - sets.language_independent
    assert len(sets.attributions) == 4 * 3  # edit prompt + 2 paraphrases per language
    frame = sets.to_frame()
    assert len(frame) == sum(len(v) for v in sets.per_language.values())


def test_configurable_independent_languages(tiny_models, bundled):
    lm = tiny_models["llama"]
    fact = bundled.get("geo-capital-france")
    config = NeuronConfig(steps=2, threshold=0.2, independent_languages=("en", "ja"), use_paraphrases=False)
    sets = find_neurons(lm, fact, "en", config, cache=False)
    assert set(sets.per_language) == {"en", "ja"}
    assert sets.language_independent == sets.per_language["en"] & sets.per_language["ja"]


def test_disk_cache_is_reused(tiny_models, bundled, tmp_path, monkeypatch):
    import memla_core.neurons as neurons

    lm = tiny_models["qwen2"]
    fact = bundled.get("geo-capital-japan")
    cache = NeuronCache(lm, root=tmp_path)
    first = find_neurons(lm, fact, "en", FAST, cache=cache)
    calls = []
    monkeypatch.setattr(neurons, "attribute_prompt_all", lambda *a, **k: calls.append(a))
    second = find_neurons(lm, fact, "en", FAST, cache=cache)
    assert calls == []
    assert second.per_language == first.per_language


def test_cached_neurons_come_back_without_integrated_gradients(tiny_models, bundled, tmp_path, monkeypatch):
    """What a reloaded page shows: nothing until every prompt is attributed, then the same sets."""
    import memla_core.neurons as neurons

    lm = tiny_models["qwen2"]
    fact = bundled.get("geo-capital-japan")
    cache = NeuronCache(lm, root=tmp_path, bundle=False)
    assert cached_neurons(lm, fact, "en", FAST, cache=cache) is None
    found = find_neurons(lm, fact, "en", FAST, cache=cache)
    monkeypatch.setattr(neurons, "attribute_prompt_all", lambda *a, **k: pytest.fail("integrated gradients ran"))
    restored = cached_neurons(lm, fact, "en", FAST, cache=cache)
    assert restored is not None and restored.per_language == found.per_language
    assert restored.language_independent == found.language_independent and restored.config == FAST
    # One prompt missing (another source language's) is enough to leave the search to the user.
    assert cached_neurons(lm, fact, "de", FAST, cache=cache) is None


def test_missing_source_language_fails_before_work(tiny_models, bundled):
    from memla_core.data import MissingLanguageError, load_mkeb

    fact = bundled.get("geo-capital-france")
    with pytest.raises(MissingLanguageError):
        find_neurons(tiny_models["gpt2"], fact, "xx", FAST, cache=False)
