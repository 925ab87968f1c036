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
from memla_core.export import ADAPTER_CONFIG, ADAPTER_README, ADAPTER_WEIGHTS, adapter_zip, has_adapter, portable_base_model
from memla_core.models import DEFAULT_MODEL
from memla_core.neurons import NeuronConfig
from memla_core.session import compute_edit


@pytest.mark.parametrize("arch", ["llama", "gpt2"])  # nn.Linear and Conv1D down projections
def test_adapter_round_trip(arch, tiny_models, tiny_checkpoints, bundled, tmp_path):
    lm = tiny_models[arch]
    config = MemlaConfig(lr=0.05, max_steps=4, neurons=NeuronConfig(steps=2, threshold=0.1))
    edit = compute_edit(lm, EditRequest(bundled.get("geo-capital-france"), "en"), "memla", config)
    assert has_adapter(edit)

    portable = portable_base_model(lm)
    assert portable == tiny_checkpoints[arch].name  # a local folder: its name, not this machine's path
    with zipfile.ZipFile(io.BytesIO(adapter_zip(edit, base_model=portable))) as archive:
        assert sorted(archive.namelist()) == sorted([ADAPTER_CONFIG, ADAPTER_WEIGHTS, ADAPTER_README])
        archive.extractall(tmp_path)
    saved = json.loads((tmp_path / ADAPTER_CONFIG).read_text())
    assert saved["base_model_name_or_path"] == portable and "/" not in portable
    readme = (tmp_path / ADAPTER_README).read_text()
    assert f'AutoModelForCausalLM.from_pretrained("{portable}")' in readme and "PeftModel.from_pretrained" in readme

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


def test_portable_names_of_the_default_model_and_hub_ids(tiny_models):
    from dataclasses import replace
    from types import SimpleNamespace

    lm = tiny_models["llama"]
    assert portable_base_model(SimpleNamespace(spec=replace(lm.spec, name_or_path=DEFAULT_MODEL))) == "gemma3-270m"
    assert portable_base_model(SimpleNamespace(spec=replace(lm.spec, name_or_path="google/gemma-3-270m"))) == "google/gemma-3-270m"
