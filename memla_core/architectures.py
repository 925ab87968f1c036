"""Where each architecture keeps the modules MEMLA and the baselines touch.

One table, looked up by ``config.model_type``: the rest of the code never branches on
architecture names. Paths are relative to the causal-LM object (``model``), with ``{l}`` for
the layer index.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

WeightLayout = Literal["out_in", "in_out"]


@dataclass(frozen=True)
class ArchitectureAdapter:
    """Module paths of one family of architectures.

    ``weight_layout`` is how the down projection stores its weight: ``out_in`` for
    ``nn.Linear`` ([out, in]), ``in_out`` for GPT-2's ``Conv1D`` ([in, out]). Knowledge
    neurons are the *input* features of the down projection in either case.
    """

    family: str
    layers: str  # the ModuleList of decoder blocks
    down_proj: str  # relative to a block: the MLP's second projection
    attn_out: str  # relative to a block: attention output projection (PMET)
    weight_layout: WeightLayout
    # relative to a block: the MLP's first projection, whose output (before the nonlinearity) the
    # authors' code reads as the neuron activation (``NeuronConfig.activation_site="up_output"``)
    up_proj: str = ""

    def layer_modules(self, model: nn.Module) -> nn.ModuleList:
        return _get(model, self.layers)

    def num_layers(self, model: nn.Module) -> int:
        return len(self.layer_modules(model))

    def layer_name(self, layer: int) -> str:
        """The decoder block itself (its output is the residual stream after the block)."""
        return f"{self.layers}.{layer}"

    def down_proj_name(self, layer: int) -> str:
        return f"{self.layers}.{layer}.{self.down_proj}"

    def attn_out_name(self, layer: int) -> str:
        return f"{self.layers}.{layer}.{self.attn_out}"

    def up_proj_name(self, layer: int) -> str:
        if not self.up_proj:
            raise UnsupportedArchitectureError(
                f"The '{self.family}' adapter names no MLP up projection; add `up_proj` to its entry in "
                "memla_core.architectures.ADAPTERS, or use only down projections "
                "(NeuronConfig.activation_site='down_input', MendConfig.modules)."
            )
        return f"{self.layers}.{layer}.{self.up_proj}"

    def down_proj_module(self, model: nn.Module, layer: int) -> nn.Module:
        return _get(model, self.down_proj_name(layer))

    def up_proj_module(self, model: nn.Module, layer: int) -> nn.Module:
        return _get(model, self.up_proj_name(layer))

    def attn_out_module(self, model: nn.Module, layer: int) -> nn.Module:
        return _get(model, self.attn_out_name(layer))

    def num_neurons(self, model: nn.Module) -> int:
        """Width of the MLP's intermediate layer (inputs of the down projection)."""
        weight = self.down_proj_module(model, 0).weight
        return weight.shape[1] if self.weight_layout == "out_in" else weight.shape[0]

    def as_out_in(self, weight: torch.Tensor) -> torch.Tensor:
        """View a down-projection weight as [out, in] whatever its storage layout."""
        return weight if self.weight_layout == "out_in" else weight.T


_GPT2 = ArchitectureAdapter("gpt2", "transformer.h", "mlp.c_proj", "attn.c_proj", "in_out", "mlp.c_fc")
_LLAMA = ArchitectureAdapter("llama", "model.layers", "mlp.down_proj", "self_attn.o_proj", "out_in", "mlp.up_proj")
_BLOOM = ArchitectureAdapter(
    "bloom", "transformer.h", "mlp.dense_4h_to_h", "self_attention.dense", "out_in", "mlp.dense_h_to_4h"
)
_NEOX = ArchitectureAdapter(
    "gpt_neox", "gpt_neox.layers", "mlp.dense_4h_to_h", "attention.dense", "out_in", "mlp.dense_h_to_4h"
)
_OPT = ArchitectureAdapter("opt", "model.decoder.layers", "fc2", "self_attn.out_proj", "out_in", "fc1")
_XGLM = ArchitectureAdapter("xglm", "model.layers", "fc2", "self_attn.out_proj", "out_in", "fc1")
_GPTJ = ArchitectureAdapter("gptj", "transformer.h", "mlp.fc_out", "attn.out_proj", "out_in", "mlp.fc_in")

#: ``config.model_type`` -> adapter. mGPT is a GPT-2 model type.
ADAPTERS: dict[str, ArchitectureAdapter] = {
    "gpt2": _GPT2,
    "llama": _LLAMA,
    "mistral": _LLAMA,
    "qwen2": _LLAMA,
    "qwen3": _LLAMA,
    "gemma": _LLAMA,
    "gemma2": _LLAMA,
    "gemma3_text": _LLAMA,
    "phi3": _LLAMA,
    "olmo": _LLAMA,
    "bloom": _BLOOM,
    "gpt_neox": _NEOX,
    "opt": _OPT,
    "xglm": _XGLM,
    "gptj": _GPTJ,
}


class UnsupportedArchitectureError(ValueError):
    pass


def adapter_for(model: nn.Module) -> ArchitectureAdapter:
    """The adapter of a loaded model, checked against the model's real modules."""
    model_type = getattr(model.config, "model_type", None)
    adapter = ADAPTERS.get(model_type)
    if adapter is None:
        raise UnsupportedArchitectureError(
            f"Architecture '{model_type}' has no adapter in memla_core.architectures.ADAPTERS. "
            f"Supported: {', '.join(sorted(ADAPTERS))}. Add an entry naming its decoder-layer "
            "list, MLP down projection, attention output projection and weight layout."
        )
    missing = []
    try:
        adapter.layer_modules(model)
    except AttributeError:
        missing.append(f"decoder layers at '{adapter.layers}'")
    else:
        for name in (adapter.down_proj_name(0), adapter.attn_out_name(0)):
            try:
                _get(model, name)
            except AttributeError:
                missing.append(f"module '{name}'")
    if missing:
        raise UnsupportedArchitectureError(
            f"Model type '{model_type}' does not have the modules its adapter expects: "
            f"{', '.join(missing)}. Fix its entry in memla_core.architectures.ADAPTERS."
        )
    return adapter


def _get(root: nn.Module, path: str) -> nn.Module:
    module = root
    for part in path.split("."):
        module = module[int(part)] if part.isdigit() else getattr(module, part)
    return module
