"""A MEMLA edit exported as a peft adapter reproduces the edit when loaded by peft."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from memla_core.editing import Edit, EditError, EditRequest, MemlaConfig
from memla_core.export import ADAPTER_CONFIG, ADAPTER_WEIGHTS, adapter_zip, has_adapter
from memla_core.neurons import NeuronConfig
from memla_core.session import compute_edit


@pytest.mark.parametrize("arch", ["llama", "gpt2"])  # nn.Linear and Conv1D down projections
def test_adapter_round_trip(arch, tiny_models, tiny_checkpoints, bundled, tmp_path):
    lm = tiny_models[arch]
    config = MemlaConfig(lr=0.05, max_steps=4, neurons=NeuronConfig(steps=2, threshold=0.1))
    edit = compute_edit(lm, EditRequest(bundled.get("geo-capital-france"), "en"), "memla", config)
    assert has_adapter(edit)

    with zipfile.ZipFile(io.BytesIO(adapter_zip(edit, base_model=str(tiny_checkpoints[arch])))) as archive:
        assert sorted(archive.namelist()) == sorted([ADAPTER_CONFIG, ADAPTER_WEIGHTS])
        archive.extractall(tmp_path)
    saved = json.loads((tmp_path / ADAPTER_CONFIG).read_text())
    assert saved["base_model_name_or_path"] == str(tiny_checkpoints[arch])

    base = AutoModelForCausalLM.from_pretrained(tiny_checkpoints[arch], dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, str(tmp_path)).merge_and_unload()
    merged_weights = dict(merged.named_parameters())
    assert max(float(d.abs().max()) for d in edit.weight_deltas.values()) > 1e-4  # a real change
    with edit.applied(lm):
        for name in edit.weight_deltas:
            assert torch.allclose(merged_weights[name], dict(lm.model.named_parameters())[name], atol=1e-6)


def test_non_lora_edit_cannot_be_exported():
    edit = Edit(method="ike", fact_id="f", source_language="en", context="New fact: ...")
    assert not has_adapter(edit)
    with pytest.raises(EditError, match="only MEMLA edits"):
        adapter_zip(edit)
