"""Neurons: find the fact's language-specific and language-independent knowledge neurons."""

import streamlit as st

from app_support import state
from app_support.forms import neuron_settings
from app_support.neuron_panel import neurons_from_cache, show_neurons
from app_support.widgets import PAGES, finish, halt, language_select, long_task, require_fact, require_model, show_notice
from memla_core.neurons import language_prompts
from memla_core.session import compute_neurons
from memla_core.views import language_label

st.title("Knowledge neurons")
lm, fact = require_model(), require_fact()
st.markdown(
    "MEMLA edits only the MLP neurons that carry the fact. Integrated gradients score every neuron for "
    "the edit prompt and its paraphrases in each language; the neurons all compared languages share are "
    "**language-independent**, the source language's others are **language-specific**."
)
show_notice()

source = language_select("Edit made in (source language)", list(fact.language_codes), state.SOURCE_LANGUAGE)
with st.expander("Integrated-gradients settings", expanded=True, icon=":material/tune:"):
    config = neuron_settings(fact)
languages = list(dict.fromkeys([source, *config.independent_languages]))
prompts = sum(len(language_prompts(fact, lang, config)) for lang in languages)
restored = neurons_from_cache(lm, fact, source, config)
if state.neurons_for(fact, source, config) is not None:
    st.caption(f"{prompts} prompts in {len(languages)} languages, {config.steps} steps each: their attributions are "
               "ready (searched before on this machine, or shipped with memla for the default model's bundled "
               "facts), so no integrated gradients run.")
else:
    st.caption(
        f"{prompts} prompts in {len(languages)} languages, {config.steps} steps each, not attributed yet: a first "
        "run of the default model on a CPU takes about a minute with 20 steps. Results are cached on disk: the "
        "same fact and steps again, or only another threshold, take seconds."
    )
if st.button("Find neurons", type="primary", icon=":material/search:"):
    with long_task("Finding knowledge neurons") as task:
        st.session_state[state.NEURONS] = compute_neurons(lm, fact, source, config, task.counter("Attributing"), task.cancel)
    if task.ok:
        found = st.session_state[state.NEURONS]
        finish(f"Found {len(found.language_specific)} language-specific and {len(found.language_independent)} "
               "language-independent neurons.")

neurons = st.session_state[state.NEURONS]
if neurons is None or neurons.fact_id != fact.example_id:
    st.info("Press **Find neurons** to compute them (or go straight to editing: MEMLA finds them itself).")
    halt()
if neurons.config != config or neurons.source_language != source:
    st.warning(f"These neurons were found with other settings (source {language_label(neurons.source_language)}, "
               f"{neurons.config.steps} steps, threshold {neurons.config.threshold:g}). Press **Find neurons** to update them.")
if restored:
    st.caption(":material/history: Taken from the on-disk cache: these settings were searched before "
               "(no integrated gradients run).")
show_neurons(neurons, lm.num_layers, lm.num_neurons)
st.page_link(PAGES["edit"], label="Next: edit the fact with these neurons", icon=":material/arrow_forward:")
