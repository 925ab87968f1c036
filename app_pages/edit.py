"""Edit: apply MEMLA (or another registered method) to the fact and compare before/after."""

import streamlit as st

from app_support import state
from app_support.ability_panel import ability_section
from app_support.edit_panel import default_targets, free_text, revert, run_edits, show_outcomes
from app_support.forms import method_settings, preset_choice
from app_support.mend_panel import mend_section
from app_support.sidebar import method_title
from app_support.stack_panel import stack_note, stack_section
from app_support.widgets import bound, errors_shown, language_select, require_fact, require_model, show_notice
from memla_core.editing import METHODS
from memla_core.views import language_label

st.title("Edit the fact")
lm, fact = require_model(), require_fact()
show_notice()

codes = list(fact.language_codes)
source = language_select("Edit made in (source language)", codes, state.SOURCE_LANGUAGE)
if st.session_state[state.TARGET_LANGUAGES] is None or not set(st.session_state[state.TARGET_LANGUAGES]) <= set(codes):
    state.reset_setting(state.TARGET_LANGUAGES, default_targets(fact, source))
targets = bound(st.multiselect, "Evaluated in (target languages)", state.TARGET_LANGUAGES, options=codes,
                format_func=language_label, help="Each language adds a few seconds on a CPU, before and after the edit.")
edit_prompt = fact.in_language(source).edit
st.markdown(f"The edit: “{edit_prompt.filled()}” **{edit_prompt.target_true or '?'}** → **{edit_prompt.target_new}**")

methods = bound(st.multiselect, "Methods (several = compared side by side on this fact)", state.METHODS_CHOSEN,
                options=list(METHODS), format_func=method_title)
configs = {}
with st.expander("Settings", icon=":material/tune:"):
    for tab, method in zip(st.tabs([method_title(m) for m in methods]) if methods else [], methods):
        with tab, errors_shown(f"{method_title(method)} settings"):
            st.caption(METHODS[method].description)
            preset_choice(method, lm)
            configs[method] = method_settings(method, fact)

mend_ready = mend_section(lm, configs)  # MEND's hypernetwork: trained, or a button that trains it
outcomes = state.edits()
apply_col, revert_col = st.columns(2)
ready = bool(methods) and bool(targets) and len(configs) == len(methods) and mend_ready
if apply_col.button("Apply again (replaces your edit)" if outcomes else "Apply edit", type="primary", disabled=not ready, icon=":material/play_arrow:",
                    help=None if ready else "Choose at least one method and one target language (and fix the settings, or train MEND)."):
    run_edits(lm, fact, source, targets, configs)
revert_col.button("Revert edit", disabled=not outcomes, on_click=revert, icon=":material/undo:",
                  help="Forget this session's edit: answers come from the unedited model again.")
st.caption("The model is shared by everyone using this app; your edit changes only *your* answers, and only while they are computed.")
stack_note()

if outcomes:
    st.header("Before and after the edit")
    show_outcomes(outcomes, lm)
stack_section(lm, fact, targets, outcomes)
ability_section(lm, outcomes)
st.header("Ask anything")
st.caption("Any prompt, answered by the unedited model and, next to it, by your edited model.")
with errors_shown("Answering the prompt"):
    free_text(lm, fact, source, outcomes)
