"""Shipped attributions (memla_core/neuron_bundle.py): compaction, lookup under the disk cache,
and a neuron search that needs no IG. The shipped file itself is checked against a fresh
computation on the default model in tests/integration/test_default_model.py."""

import numpy as np
import pytest

import memla_core.neurons as neurons
from memla_core.neuron_bundle import FLOOR, NeuronBundle, compact, write_bundle
from memla_core.neurons import NeuronCache, NeuronConfig, PromptAttribution, find_neurons

FAST = NeuronConfig(steps=4, threshold=0.2)


def _scores(seed: int, shape=(6, 40)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) ** 3).astype(np.float32)  # heavy tails, like attributions


def _roundtrip(tmp_path, scores_by_key: dict[str, np.ndarray]) -> NeuronBundle:
    path = tmp_path / "bundle.npz"
    assert write_bundle(scores_by_key.items(), path) == len(scores_by_key)
    return NeuronBundle.read(path)


def test_compact_keeps_scores_above_the_floor_and_zeroes_the_rest(tmp_path):
    scores = _scores(0)
    bundle = _roundtrip(tmp_path, {"a": scores})
    back = bundle.get("a")
    top = scores.max()
    above = scores > FLOOR * top
    np.testing.assert_allclose(back[above], scores[above], rtol=1e-3)  # float16 ratio
    assert (back[~above] == 0).all()
    assert back.max() == pytest.approx(top)  # the maximum itself is exact
    assert bundle.get("missing") is None


@pytest.mark.parametrize("threshold", [0.05, 0.1, 0.2, 0.3, 0.5])
def test_thresholds_at_or_above_the_floor_select_the_same_neurons(tmp_path, threshold):
    scores = _scores(1, (18, 512))
    back = _roundtrip(tmp_path, {"a": scores}).get("a")
    full = PromptAttribution("en", "p", "a", scores).coarse_neurons(threshold)
    shipped = PromptAttribution("en", "p", "a", back).coarse_neurons(threshold)
    # float16 keeps a ratio to 0.05%: only a neuron that close to the threshold may flip
    ratios = scores / scores.max()
    near = {(int(l), int(i)) for l, i in zip(*np.nonzero(np.abs(ratios - threshold) < 1e-3 * threshold + 1e-7))}
    assert (shipped ^ full) <= near
    assert len(full) > 10 and len(shipped ^ full) <= len(near) < 0.01 * scores.size


def test_prompts_without_positive_scores_and_shape_mismatch(tmp_path):
    bundle = _roundtrip(tmp_path, {"neg": -np.abs(_scores(2)), "pos": _scores(3)})
    assert not bundle.get("neg").any()
    assert bundle.get("pos").max() > 0
    with pytest.raises(ValueError, match="shape"):
        write_bundle([("a", _scores(0)), ("b", _scores(0, (5, 40)))], tmp_path / "bad.npz")
    with pytest.raises(ValueError, match="No attributions"):
        write_bundle([], tmp_path / "empty.npz")


def test_compact_entries_are_few():
    layers, index, ratios, top = compact(_scores(4, (18, 2048)))
    assert len(layers) < 0.5 * 18 * 2048 and ratios.dtype == np.float16 and top > 0


def _bundle_for(lm, fact, tmp_path, config=NeuronConfig(steps=4)) -> tuple[NeuronBundle, object]:
    """Compute a fact's attributions once (cache off) and ship them as a bundle."""
    computed = find_neurons(lm, fact, "en", config, cache=False)
    entries = [(NeuronCache.key(a.language, a.prompt, a.answer, config), a.scores) for a in computed.attributions]
    return _roundtrip(tmp_path, dict(entries)), computed


def test_neuron_search_on_shipped_prompts_runs_no_ig(tiny_models, bundled, tmp_path, monkeypatch):
    lm = tiny_models["gpt2"]
    fact = bundled.get("geo-capital-japan")
    bundle, computed = _bundle_for(lm, fact, tmp_path, FAST)
    calls = []
    monkeypatch.setattr(neurons, "attribute_prompt_all", lambda *a, **k: calls.append(a))
    cache = NeuronCache(lm, root=tmp_path / "disk", bundle=bundle)
    shipped = find_neurons(lm, fact, "en", FAST, cache=cache)
    assert calls == []
    assert shipped.per_language == computed.per_language
    assert shipped.language_independent == computed.language_independent
    assert not any((tmp_path / "disk").rglob("*.npz"))  # the bundle is read-only: nothing copied to disk


def test_disk_files_win_and_other_settings_compute(tiny_models, bundled, tmp_path, monkeypatch):
    lm = tiny_models["gpt2"]
    fact = bundled.get("geo-capital-japan")
    bundle, _ = _bundle_for(lm, fact, tmp_path, FAST)
    cache = NeuronCache(lm, root=tmp_path / "disk", bundle=bundle)
    prompt, answer = fact.in_language("en").edit.filled(), fact.in_language("en").edit.target_true
    mine = {"difference": np.full(bundle.shape, 7.0, np.float32)}
    cache.put("en", prompt, answer, FAST, mine)
    assert cache.get("en", prompt, answer, FAST).scores.max() == 7.0
    # another multiplier or IG setting is not shipped: it is computed
    assert cache.get("zh", fact.in_language("zh").edit.filled(), fact.in_language("zh").edit.target_true,
                     NeuronConfig(steps=4, ig_multiplier="activation")) is None
    assert cache.get("zh", fact.in_language("zh").edit.filled(), fact.in_language("zh").edit.target_true,
                     NeuronConfig(steps=5)) is None
    assert NeuronCache(lm, root=tmp_path / "disk", bundle=False).bundle is None


def test_models_without_a_shipped_bundle_have_none(tiny_models, tmp_path):
    assert NeuronCache(tiny_models["gpt2"], root=tmp_path).bundle is None
