"""hooks.trace: reading and patching module inputs/outputs, OPT's flattened MLP input, and that no
hook outlives its block — also when the forward pass, a patch or an editor raises."""

from __future__ import annotations

import warnings

import pytest
import torch

from memla_core import hooks
from memla_core.data.schema import EditPrompt, Fact, FactInLanguage
from memla_core.editing import EditRequest, RomeConfig, RomeEditor, StatsConfig
from memla_core.editing import locate
from memla_core.neurons import NeuronConfig, integrate_last_token


def hook_count(model: torch.nn.Module) -> int:
    """Hooks on the model besides the LM head's permanent one (``hooks.contiguous_inputs``)."""
    head = model.get_output_embeddings()
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules() if m is not head)


def _all_hook_count(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def ids(lm, rows: int = 2) -> torch.Tensor:
    return torch.tensor([lm.tokenizer("The capital of France is")["input_ids"]] * rows)


def test_inputs_and_outputs_are_rows_by_positions(tiny_lm):
    """Every architecture (OPT flattens the MLP input to [rows·positions, d]) gives [rows, positions, d]."""
    x = ids(tiny_lm)
    down, up = tiny_lm.adapter.down_proj_name(0), tiny_lm.adapter.up_proj_name(0)
    block = tiny_lm.adapter.layer_name(0)
    with torch.no_grad(), hooks.trace(tiny_lm.model, inputs=[down], outputs=[up, block], rows=2) as seen:
        tiny_lm.model(input_ids=x)
    width = tiny_lm.num_neurons
    assert seen.inputs[down].shape == (2, x.shape[1], width)
    assert seen.outputs[up].shape == (2, x.shape[1], width)
    assert seen.outputs[block].shape[:2] == (2, x.shape[1])
    assert hook_count(tiny_lm.model) == 0


def test_patch_changes_the_forward_pass_and_is_kept(tiny_models):
    lm = tiny_models["opt"]
    x = ids(lm)
    name = lm.adapter.down_proj_name(1)
    with torch.no_grad():
        plain = lm.model(input_ids=x).logits
        with hooks.trace(lm.model, inputs=[name], rows=2, patch_input=lambda _n, t: torch.zeros_like(t)) as seen:
            zeroed = lm.model(input_ids=x).logits
        with hooks.trace(lm.model, inputs=[name], rows=2, patch_input=lambda _n, t: None):
            untouched = lm.model(input_ids=x).logits
    assert not torch.equal(plain, zeroed)
    assert torch.equal(plain, untouched)
    assert torch.count_nonzero(seen.inputs[name]) == 0  # what the module received, after the patch


def test_stop_after_skips_later_layers(tiny_models):
    lm = tiny_models["llama"]
    first, second = lm.adapter.layer_name(0), lm.adapter.down_proj_name(1)
    with torch.no_grad(), hooks.trace(lm.model, outputs=[first, second], stop_after=first) as seen:
        lm.model(input_ids=ids(lm))
    assert first in seen.outputs and second not in seen.outputs
    assert hook_count(lm.model) == 0


def test_stop_after_must_be_traced(tiny_models):
    lm = tiny_models["llama"]
    with pytest.raises(ValueError, match="stop_after"):
        with hooks.trace(lm.model, outputs=[], stop_after=lm.adapter.layer_name(0)):
            pass


@pytest.mark.parametrize("where", ["body", "patch", "unknown module"])
def test_no_hook_is_left_behind_on_error(tiny_models, where):
    lm = tiny_models["gpt2"]
    names = [lm.adapter.down_proj_name(0), lm.adapter.down_proj_name(1)]
    if where == "unknown module":  # registration fails after the first hook was added
        names.append("transformer.h.9.mlp.c_proj")

    def failing(_name, _x):
        raise RuntimeError("patch failed")

    with pytest.raises((RuntimeError, AttributeError)):
        with hooks.trace(lm.model, inputs=names, outputs=names, patch_output=failing if where == "patch" else None):
            if where == "body":
                raise RuntimeError("caller failed")
            lm.model(input_ids=ids(lm))
    assert hook_count(lm.model) == 0


def test_editor_and_neuron_search_leave_no_hook_when_they_fail(tiny_models, monkeypatch):
    lm = tiny_models["llama"]
    block = FactInLanguage(EditPrompt("France", "The capital city of {}", "Lyon", "Paris"))
    request = EditRequest(Fact("hooks", "capital", {"en": block}), "en")

    def broken(*_args, **_kwargs):
        raise RuntimeError("logits failed")

    monkeypatch.setattr(locate, "project_to_logits", broken)  # fails inside the value optimisation's hooks
    with pytest.raises(RuntimeError, match="logits failed"):
        RomeEditor(RomeConfig(context_templates=0, stats=StatsConfig(samples=4, max_new_tokens=2))).compute(lm, request)
    assert hook_count(lm.model) == 0

    monkeypatch.setattr("memla_core.neurons._target_prob", broken)  # fails inside the IG hooks
    with pytest.raises(RuntimeError, match="logits failed"):
        integrate_last_token(lm, ids(lm, 1)[0].tolist(), 5, NeuronConfig(steps=2))
    assert hook_count(lm.model) == 0


def test_neuron_search_emits_no_deprecation_warning(tiny_models):
    """The key/value cache goes through transformers' current ``cache=`` argument."""
    lm = tiny_models["llama"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        scores = integrate_last_token(lm, ids(lm, 1)[0].tolist(), 5, NeuronConfig(steps=2))
    assert scores["difference"].shape == (lm.num_layers, lm.num_neurons)


def test_lm_head_gets_contiguous_inputs_with_the_same_logits(tiny_lm):
    head = tiny_lm.model.get_output_embeddings()
    assert _all_hook_count(tiny_lm.model) - hook_count(tiny_lm.model) == 1  # installed by load_model
    hidden = torch.randn(3, 5, head.in_features)
    seen = []
    probe = head.register_forward_pre_hook(lambda _m, args: seen.append(args[0].is_contiguous()))
    try:
        with torch.no_grad():
            strided = head(hidden[:, -1:, :])
    finally:
        probe.remove()
    assert seen == [True]  # the contiguous copy reached the layer (hooks run in registration order)
    assert torch.equal(strided, torch.nn.functional.linear(hidden[:, -1:, :].contiguous(), head.weight, head.bias))

