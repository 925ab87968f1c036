"""What survives a reload or travels in a shared link: the picked fact and source language live
in the URL's query parameters (``?fact=geo-capital-france&source=fr``), and the default model
loads by itself on a session's first run.

A reload starts a new Streamlit session with empty ``st.session_state``; the model itself stays
in memory (``resources.get_model``), so only these choices have to come back.
"""

from __future__ import annotations

import os

import streamlit as st

from memla_core.models import DEFAULT_MODEL, ModelSpec

from . import state
from .resources import get_model, is_loaded
from .widgets import long_task

FACT_PARAM, SOURCE_PARAM = "fact", "source"
AUTOLOAD_ENV = "MEMLA_APP_AUTOLOAD"
"""``1``: load the preselected model on a session's first run; ``0``: wait for Setup. Default:
``1`` for the embedded default model, ``0`` for any other (loading it may take minutes)."""
_RESTORED = "url_restored"
_AUTOLOADED = "model_autoloaded"


def restore_from_url() -> None:
    """On a session's first run, take the fact and source language from the URL."""
    if st.session_state.get(_RESTORED):
        return
    st.session_state[_RESTORED] = True
    params = st.query_params
    fact_id = params.get(FACT_PARAM)
    if fact_id and fact_id in {fact.example_id for fact in state.dataset()}:
        state.set_fact(fact_id)
        source = params.get(SOURCE_PARAM)
        fact = state.current_fact()
        if source and fact is not None and source in fact.languages:
            state.reset_setting(state.SOURCE_LANGUAGE, source)
    elif fact_id:
        state.notify(f"The link names fact '{fact_id}', which is not in {state.dataset().name}; pick one on Facts.")


def write_to_url() -> None:
    """Mirror the session's fact and source language into the URL (cleared when none)."""
    fact_id = st.session_state[state.FACT_ID]
    wanted = {FACT_PARAM: fact_id, SOURCE_PARAM: st.session_state[state.SOURCE_LANGUAGE]} if fact_id else {}
    if dict(st.query_params) != wanted:
        st.query_params.from_dict(wanted)


def should_autoload() -> bool:
    default = "1" if state.preselected_model() == DEFAULT_MODEL else "0"
    return os.environ.get(AUTOLOAD_ENV, default) == "1"


def autoload_model() -> None:
    """Load the preselected model once per session, with progress; failures leave Setup to the user."""
    if st.session_state.get(_AUTOLOADED) or state.model_spec() is not None or not should_autoload():
        return
    st.session_state[_AUTOLOADED] = True
    spec = ModelSpec(state.preselected_model())
    if not is_loaded(spec):  # after a reload it is usually still in memory: nothing to show
        with long_task(f"Loading {spec.name_or_path} (other models: Setup)") as task:
            get_model(spec, progress=lambda stage, fraction: task.show(fraction, stage))
        if not task.ok:
            return
    state.set_model(spec)
