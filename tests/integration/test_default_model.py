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
