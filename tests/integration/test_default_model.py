"""End to end on the real default model (Gemma 3 270M). CI runs these with a fresh MEMLA_CACHE."""

import pytest
import torch

from memla_core.editing import EditRequest, MemlaConfig, MemlaEditor
from memla_core.evaluation import evaluate
from memla_core.models import DEFAULT_MODEL
from memla_core.neurons import find_neurons
from memla_core.paths import cache_dir

pytestmark = pytest.mark.integration


def test_default_model_is_converted_once_and_described(real_lm):
    folder = cache_dir() / "models" / DEFAULT_MODEL
    assert (folder / "config.json").exists() and list(folder.glob("*.safetensors"))
    assert real_lm.model.config.model_type == "gemma3_text"
    assert real_lm.num_layers == 18 and real_lm.num_neurons == 2048
    assert "Gemma Terms of Use" in real_lm.licence_notice
    assert real_lm.adapter.family == "llama"


def test_memla_edit_end_to_end(real_lm, bundled):
    fact = bundled.get("geo-capital-france")
    neurons = find_neurons(real_lm, fact, "en")
    assert neurons.per_language["en"] and neurons.language_independent
    before = evaluate(real_lm, fact, source_language="en")
    edited_names = None
    snapshot = {n: p.detach().clone() for n, p in real_lm.model.named_parameters() if ".mlp.down_proj." in n}
    edit = MemlaEditor(MemlaConfig(), neurons=neurons).compute(real_lm, EditRequest(fact, "en"))
    with edit.applied(real_lm):
        after = evaluate(real_lm, fact, edit=edit)
        edited_names = set(edit.weight_deltas)
    rows = after.summary.set_index("target_lang")
    assert rows.loc["en", "ES"] == 100.0
    assert before.summary.set_index("target_lang").loc["en", "ES"] == 0.0
    flipped = [lang for lang in rows.index if lang != "en" and rows.loc[lang, "ES"] == 100.0]
    assert flipped, "the edit should carry over to at least one other language"
    assert len(after.summary) == 12
    assert edited_names and edited_names <= set(snapshot)
    assert all(torch.equal(p, snapshot[n]) for n, p in real_lm.model.named_parameters() if n in snapshot)


def test_shipped_attributions_cover_the_bundled_facts_and_match_a_fresh_computation(real_lm, bundled, tmp_path):
    """The default model's shipped attributions (memla_core/neuron_bundle.py): a bundled fact's
    English neuron search is shipped whole, every one of them (assets/DATASHEET.md),
    and integrated gradients computed now agree with the shipped scores on a sample."""
    import random

    import numpy as np

    from memla_core.neurons import NeuronCache, NeuronConfig, attribute_prompt_all, language_prompts

    config = NeuronConfig()
    cache = NeuronCache(real_lm, root=tmp_path)
    assert cache.bundle is not None, "assets/neurons/ has no bundle for the default model"
    per_fact = {
        fact.example_id: [
            (lang, prompt, fact.in_language(lang).edit.target_true)
            for lang in dict.fromkeys(("en", *config.independent_languages))
            for prompt in language_prompts(fact, lang, config)
        ]
        for fact in bundled
    }
    present = {fid: [NeuronCache.key(*job, config) in cache.bundle for job in jobs] for fid, jobs in per_fact.items()}
    covered = [fid for fid, found in present.items() if all(found)]
    partial = [fid for fid, found in present.items() if any(found) and not all(found)]
    # a fact is shipped whole (its English neuron search needs no IG) or not at all
    assert not partial, f"facts shipped in part: {partial}"
    missing = sorted(set(per_fact) - set(covered))
    assert not missing, f"bundled facts without shipped attributions: {missing} (python -m memla_core.neuron_bundle)"
    assert len(cache.bundle) == len({NeuronCache.key(*job, config) for f in covered for job in per_fact[f]})
    jobs = [job for fid in covered for job in per_fact[fid]]
    for lang, prompt, answer in random.Random(0).sample(jobs, 2):
        fresh = attribute_prompt_all(real_lm, prompt, answer, lang, config)["difference"]
        shipped = cache.bundle.get(NeuronCache.key(lang, prompt, answer, config))
        ratio, shipped_ratio = fresh / fresh.max(), shipped / shipped.max()
        kept = ratio > 0.05
        np.testing.assert_allclose(shipped_ratio[kept], ratio[kept], atol=2e-3)
        near = np.abs(ratio - 0.3) < 2e-3
        assert ((ratio > 0.3) == (shipped_ratio > 0.3))[~near].all()
