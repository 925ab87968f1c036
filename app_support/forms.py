"""Settings forms: integrated gradients and any registered editing method's config."""

from __future__ import annotations

import dataclasses
import math
from itertools import groupby
from typing import Any

import streamlit as st

from memla_core.data.schema import Fact
from memla_core.editing import ConfigField, config_fields, method_spec
from memla_core.editing import presets
from memla_core.editing.registry import coerce, set_fields
from memla_core.neurons import NeuronConfig
from memla_core.views import language_label

from . import state
from .widgets import bound


IG_STEPS_RANGE = (1, 200)
IG_BASELINES = ("eos", "zero")
IG_THRESHOLD_RANGE = (0.05, 1.0)
"""Bounds of the integrated-gradients widgets; a link's values outside them are ignored (url_state)."""


def neuron_settings(fact: Fact) -> NeuronConfig:
    """Integrated-gradients settings, shared by the Neurons and Edit pages."""
    codes = list(fact.language_codes)
    for key in (state.IG_LANGUAGES, state.widget_key(state.IG_LANGUAGES)):
        if key in st.session_state:
            st.session_state[key] = [code for code in st.session_state[key] if code in codes]
    c1, c2, c3 = st.columns(3)
    bound(c1.number_input, "IG steps m", state.IG_STEPS, min_value=IG_STEPS_RANGE[0], max_value=IG_STEPS_RANGE[1], step=1,
          help="Riemann steps of integrated gradients (paper: 20). Fewer steps are faster and coarser.")
    bound(c2.selectbox, "IG baseline", state.IG_BASELINE, options=list(IG_BASELINES),
          help="eos: each token replaced by end-of-sequence, averaged (authors' code); zero: all-zero activation.")
    bound(c3.slider, "Threshold", state.IG_THRESHOLD, min_value=IG_THRESHOLD_RANGE[0], max_value=IG_THRESHOLD_RANGE[1], step=0.05,
          help="A prompt keeps the neurons whose attribution exceeds this share of its largest one (paper: 0.3).")
    bound(st.multiselect, "Languages whose neuron sets are intersected (language-independent neurons)",
          state.IG_LANGUAGES, options=codes, format_func=language_label,
          help="The authors' code uses English, Chinese and French.")
    return state.neuron_config(fact)


PRESET_LABELS = {"tuned": "tuned for this model", "paper": "paper defaults"}
NEURON_KEYS = {"steps": state.IG_STEPS, "baseline": state.IG_BASELINE, "threshold": state.IG_THRESHOLD,
               "independent_languages": state.IG_LANGUAGES}
"""A method's ``neurons.*`` fields -> the session's shared integrated-gradients settings."""


def preset_choice(method: str, lm) -> None:
    """"Start from: tuned for this model / paper defaults" where a sweep chose values for this
    method and the loaded model's type; choosing one sets the form's fields to it. The first time
    the form is shown for a model type, it starts from the preset a link named (``url_state``) or
    else from the tuned values, as ``memla edit`` does."""
    spec, kind = method_spec(method), presets.model_type(lm)
    if not presets.has_tuned(method, lm):
        st.caption(f"Starts from the paper's defaults: no {spec.title} settings have been tuned for {kind or 'this'} "
                   "models yet (a sweep on the dev split chooses them per model family, see docs/tuning.md). The "
                   "paper's were chosen for mGPT 1.3B and may not suit this model.")
        return
    name = state.method_preset(method, kind)
    st.session_state[state.PRESET_MODEL_TYPE] = kind  # the URL writes this model type's presets
    if name not in st.session_state:
        first = st.session_state[state.LINKED_PRESETS].get(method, "tuned")  # a link's choice, else as `memla edit`
        # A link that named this form's preset was sent from a drawn form: its IG settings are what the
        # sender saw after the preset, so they win (at their values now: the user may have changed them
        # on the Neurons page since). Without one, the preset sets the IG fields it names (the tuned
        # threshold, as its caption says) and leaves the others as they are.
        linked = ({key: st.session_state[key] for key in st.session_state[state.LINKED_NEURONS] if key in st.session_state}
                  if method in st.session_state[state.LINKED_PRESETS] else {})
        apply_preset(method, lm, first)
        state.reset_setting(name, first)
        for key, value in linked.items():
            state.reset_setting(key, value)
    preset = bound(st.radio, "Start from", name, default="tuned", options=list(presets.PRESETS),
                   format_func=PRESET_LABELS.get, horizontal=True, on_change=_preset_changed, args=(method, lm, name),
                   help="Sets the fields below; change any of them afterwards.")
    st.caption(presets.describe_preset(method, lm, preset))


def _preset_changed(method: str, lm, name: str) -> None:
    apply_preset(method, lm, st.session_state[state.widget_key(name)])


def apply_preset(method: str, lm, preset: str) -> None:
    """Set every field of ``method``'s form to ``preset``'s value, which is the form's own default
    where the preset leaves a field alone. The shared IG settings are the Neurons page's too: only
    those a preset of this method names (the tuned threshold, say) are set, so that choosing a preset
    never throws away IG steps or languages the user chose there (and the attributions they cost)."""
    spec = method_spec(method)
    values = presets.preset_values(method, lm, preset)
    named = set(presets.preset_values(method, lm, "tuned"))
    for f in config_fields(spec.config_cls):
        if f.kind is object:
            continue
        head, _, rest = f.path.partition(".")
        shared = spec.uses_neurons and head == "neurons"
        if shared and (rest not in NEURON_KEYS or f.path not in named):
            continue
        value = coerce(values[f.path], f) if f.path in values else f.default
        if f.kind is tuple:  # the languages multiselect takes a list, other lists are typed as text
            value = list(value or ()) if shared else ",".join(map(str, value or ()))
        state.reset_setting(NEURON_KEYS[rest] if shared else state.method_setting(method, f.path), value)


def method_settings(method: str, fact: Fact) -> Any:
    """A form for every field of the method's config, labels and help from the fields' metadata;
    returns the config object.

    Fields that default to ``None`` (the baselines' layers) start empty: empty means the
    architecture's default. The knowledge-neuron fields take the session's integrated-gradients
    settings, shared with the Neurons page.
    """
    spec = method_spec(method)
    shown = [f for f in config_fields(spec.config_cls)
             if f.kind is not object and not (spec.uses_neurons and f.group.split(".")[0] == "neurons")]
    values: dict[str, Any] = {}
    switches = [f for f in shown if f.kind is bool]
    if switches:
        st.markdown("**Switches** (the paper's ablations, Table 5)" if spec.variants else "**Switches**")
        columns = st.columns(2)
        for i, f in enumerate(switches):
            values[f.path] = bound(columns[i % 2].toggle, f.label, state.method_setting(method, f.path),
                                   default=f.default, help=f.help or None)
    for group, members in groupby([f for f in shown if f.kind is not bool], key=lambda f: f.group):
        if group:
            st.markdown(f"**{_group_title(spec.config_cls, group)}**")
        for f, col in zip(members, _cycle_columns(4)):  # members first: no empty row at the end
            values[f.path] = _field_input(col, method, f)
    if spec.uses_neurons:
        st.markdown("**Knowledge neurons** (integrated gradients; the same settings as on the Neurons page)")
        values["neurons"] = neuron_settings(fact)
    return set_fields(spec.config_cls(), values, owner=method)


def _cycle_columns(count: int):
    """Columns ``count`` to a row, as many rows as needed."""
    while True:
        yield from st.columns(count)


def _field_input(col, method: str, f: ConfigField) -> Any:
    """One widget for a scalar, choice or list field; an optional field may be left empty."""
    key, help_text = state.method_setting(method, f.path), f.help or None
    if f.choices:
        return bound(col.selectbox, f.label, key, default=f.default, options=list(f.choices), help=help_text)
    if f.kind in (int, float):
        empty = {"placeholder": "architecture default"} if f.optional else {}
        if f.kind is int:
            return bound(col.number_input, f.label, key, default=f.default, step=1, help=help_text, **empty)
        default = f.default
        finite = isinstance(default, float) and math.isfinite(default) and default != 0
        step = 10 ** math.floor(math.log10(abs(default))) if finite else 0.01
        return bound(col.number_input, f.label, key, default=default, step=step, format="%g", help=help_text, **empty)
    if f.kind is tuple:
        text = "" if f.default is None else ",".join(map(str, f.default))
        placeholder = "architecture default" if f.optional else None
        return bound(col.text_input, f.label, key, default=text, help=help_text, placeholder=placeholder)
    return bound(col.text_input, f.label, key, default=f.default, help=help_text)


def _group_title(config_cls: type, group: str) -> str:
    """The nested config's own label (``stats`` -> "Key statistics")."""
    head = group.split(".")[0]
    meta = next(f.metadata for f in dataclasses.fields(config_cls) if f.name == head)
    return meta.get("label", group)
