"""The sidebar every page shares: what this session works on, at a glance."""

from __future__ import annotations

import streamlit as st

from memla_core.editing import METHODS
from memla_core.views import format_count, language_label

from . import state
from .resources import get_model, is_loaded


def _model_line() -> str:
    spec = state.model_spec()
    if spec is None or not is_loaded(spec):
        return "not loaded — see **Setup**"
    lm = get_model(spec)
    return f"`{spec.name_or_path}` on {lm.device.type}, {format_count(lm.parameter_count())} parameters"


def method_title(method: str) -> str:
    return METHODS[method].title if method in METHODS else method


def draw_sidebar() -> None:
    fact = state.current_fact()
    neurons = st.session_state[state.NEURONS]
    edits = state.edits()
    with st.sidebar:
        st.markdown("#### This session")
        st.markdown(f"**Model:** {_model_line()}")
        data = state.dataset()
        st.markdown(f"**Dataset:** {data.name} ({len(data)} facts, {len(data.languages)} languages)")
        st.markdown(f"**Fact:** {fact.label if fact else 'none picked — see **Facts**'}")
        if neurons is not None:
            st.markdown(
                f"**Neurons:** {len(neurons.language_specific)} language-specific, "
                f"{len(neurons.language_independent)} language-independent "
                f"(edit in {language_label(neurons.source_language)})"
            )
        if edits:
            names = ", ".join(method_title(outcome.method) for outcome in edits.values())
            st.markdown(f"**Edit:** {names} applied — only to your answers; other users see the unedited model")
        elif not state.stack():
            st.markdown("**Edit:** none (the model is unedited)")
        stack = state.stack()
        if stack:
            st.markdown(f"**Edit stack:** {len(stack)} edit(s) — "
                        + ", ".join(entry.label for entry in stack) + " (see **Edit**)")
