"""Settings forms: integrated gradients and any registered editing method's config."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import streamlit as st

from memla_core.data.schema import Fact
from memla_core.editing import METHODS
from memla_core.neurons import NeuronConfig
from memla_core.views import language_label

from . import state
from .widgets import bound

# Labels and help for config fields (any method); unknown fields show their own name.
FIELD_HELP: dict[str, tuple[str, str]] = {
    "rank_multiplier": ("Rank multiplier n", "An editor's LoRA rank in a layer is n × its neurons there (paper: 1; 4 for Llama-3-8B)."),
    "lr": ("Learning rate", "Adam learning rate (paper: 0.001)."),
    "max_steps": ("Max steps", "Optimisation stops here at the latest (paper: 60)."),
    "coefficient": ("Coefficient c", "W ← W + c·(ΔW_S + ΔW_I) (authors' code: 0.5)."),
    "stop_loss": ("Stop when loss <", "Early stop on the loss."),
    "stop_p_new": ("Stop when P(new) >", "Early stop once the new answer is this likely."),
    "weight_new": ("Weight of NLL(new)", "loss = w_new·NLL(new) + w_true·P(true)."),
    "weight_true": ("Weight of P(true)", "loss = w_new·NLL(new) + w_true·P(true)."),
    "seed": ("Seed", "Random initialisation of the LoRA A matrices."),
    "use_lse": ("Use the language-specific editor (LSE)", "Off = ablation “w/o LSE”."),
    "use_lie": ("Use the language-independent editor (LIE)", "Off = ablation “w/o LIE”."),
    "mask_lse": ("Mask the LSE to its neurons (LSM)", "Off = ablation “w/o LSM”: LSE may change every neuron of its layers."),
    "mask_lie": ("Mask the LIE to its neurons (LIM)", "Off = ablation “w/o LIM”: LIE may change every neuron of its layers."),
}


def neuron_settings(fact: Fact) -> NeuronConfig:
    """Integrated-gradients settings, shared by the Neurons and Edit pages."""
    codes = list(fact.language_codes)
    for key in (state.IG_LANGUAGES, state.widget_key(state.IG_LANGUAGES)):
        if key in st.session_state:
            st.session_state[key] = [code for code in st.session_state[key] if code in codes]
    c1, c2, c3 = st.columns(3)
    bound(c1.number_input, "IG steps m", state.IG_STEPS, min_value=1, max_value=200, step=1,
          help="Riemann steps of integrated gradients (paper: 20). Fewer steps are faster and coarser.")
    bound(c2.selectbox, "IG baseline", state.IG_BASELINE, options=["eos", "zero"],
          help="eos: each token replaced by end-of-sequence, averaged (authors' code); zero: all-zero activation.")
    bound(c3.slider, "Threshold", state.IG_THRESHOLD, min_value=0.05, max_value=1.0, step=0.05,
          help="A prompt keeps the neurons whose attribution exceeds this share of its largest one (paper: 0.3).")
    bound(st.multiselect, "Languages whose neuron sets are intersected (language-independent neurons)",
          state.IG_LANGUAGES, options=codes, format_func=language_label,
          help="The authors' code uses English, Chinese and French.")
    return state.neuron_config(fact)


def _scalar_fields(config_cls: type) -> list[tuple[str, Any]]:
    defaults = config_cls()
    return [
        (f.name, getattr(defaults, f.name))
        for f in dataclasses.fields(config_cls)
        if isinstance(getattr(defaults, f.name), (bool, int, float, str))
    ]


def method_settings(method: str, fact: Fact) -> Any:
    """A form for ``METHODS[method].config_cls`` (scalar fields); returns the config object.

    A config with a ``neurons`` field gets the session's integrated-gradients settings.
    """
    spec = METHODS[method]
    fields = _scalar_fields(spec.config_cls)
    switches = [(name, value) for name, value in fields if isinstance(value, bool)]
    numbers = [(name, value) for name, value in fields if not isinstance(value, bool)]
    values: dict[str, Any] = {}
    if switches:
        st.markdown("**Switches** (the paper's ablations, Table 5)" if method == "memla" else "**Switches**")
        columns = st.columns(2)
        for i, (name, default) in enumerate(switches):
            col = columns[i % 2]
            label, help_text = FIELD_HELP.get(name, (name.replace("_", " "), None))
            values[name] = bound(col.toggle, label, state.method_setting(method, name), default=default, help=help_text)
    columns = st.columns(4)
    for i, (name, default) in enumerate(numbers):
        label, help_text = FIELD_HELP.get(name, (name.replace("_", " "), None))
        col, key = columns[i % 4], state.method_setting(method, name)
        if isinstance(default, int):
            values[name] = bound(col.number_input, label, key, default=default, step=1, help=help_text)
        elif isinstance(default, float):
            step = 10 ** math.floor(math.log10(abs(default))) if default else 0.01
            values[name] = bound(col.number_input, label, key, default=default, step=step, format="%g", help=help_text)
        else:
            values[name] = bound(col.text_input, label, key, default=default, help=help_text)
    if any(f.name == "neurons" for f in dataclasses.fields(spec.config_cls)):
        st.markdown("**Knowledge neurons** (integrated gradients; the same settings as on the Neurons page)")
        values["neurons"] = neuron_settings(fact)
    return spec.config_cls(**values)
