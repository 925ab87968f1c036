"""The Neurons page's results: heatmaps, per-layer counts, overlap across languages, tables."""

from __future__ import annotations

import streamlit as st

from memla_core.charts import attribution_heatmap, layer_counts_chart, overlap_heatmap
from memla_core.data.schema import Fact
from memla_core.models import LoadedModel
from memla_core.neurons import NeuronConfig, NeuronSets, cached_neurons
from memla_core.session import edited
from memla_core.views import language_attribution, language_label, neuron_overlap, neuron_summary, top_neurons

from . import state
from .widgets import LANGUAGE_BOX_WIDTH, table


def neurons_from_cache(lm: LoadedModel, fact: Fact, source: str, config: NeuronConfig) -> bool:
    """Neurons for these settings from the disk cache when every prompt is already attributed
    (after a reload, or settings searched before), without running integrated gradients.
    True: the session's neurons were replaced by them."""
    if state.neurons_for(fact, source, config) is not None:
        return False
    with edited(lm, None):  # a fact without a true answer is answered by the unedited model
        found = cached_neurons(lm, fact, source, config)
    if found is None:
        return False
    st.session_state[state.NEURONS] = found
    return True


def show_neurons(neurons: NeuronSets, num_layers: int, num_neurons: int) -> None:
    config = neurons.config
    cols = st.columns(3)
    cols[0].metric("Language-specific neurons", len(neurons.language_specific),
                   help=f"In the {language_label(neurons.source_language)} set but not shared by all compared languages.")
    cols[1].metric("Language-independent neurons", len(neurons.language_independent),
                   help="Shared by every compared language: " + ", ".join(config.independent_languages))
    cols[2].metric("Languages compared", len(neurons.per_language))
    heat, layers, overlap, tables = st.tabs(["Attribution heatmaps", "Per layer", "Overlap between languages", "Tables"])
    with heat:
        lang = st.selectbox("Language", list(neurons.per_language), format_func=language_label, key="heat_language",
                            width=LANGUAGE_BOX_WIDTH)  # its own row: a column would cut the name short
        c2, c3 = st.columns(2)
        mode = c2.radio("Columns", ["top neurons", "all neurons, in blocks"], key="heat_mode",
                        help=f"The MLP has {num_neurons:,} neurons per layer; showing them all at once is unreadable.")
        top_k = c3.slider("Top neurons shown", 10, min(200, num_neurons), min(64, num_neurons), key="heat_k",
                          disabled=mode != "top neurons")
        scores = language_attribution(neurons, lang)
        st.plotly_chart(attribution_heatmap(scores, language_label(lang), top_k if mode == "top neurons" else None,
                                            threshold=config.threshold), key="heatmap")
        st.caption("Each prompt's attributions are divided by its largest one; a language shows the maximum over "
                   "its prompts (edit prompt and paraphrases). Hover a cell for layer, neuron and score.")
    with layers:
        counts = neurons.layer_counts()
        if counts.empty:
            st.info("No neurons passed the threshold: lower it in the settings.")
        else:
            st.plotly_chart(layer_counts_chart(counts, num_layers), key="layer_counts")
            table(counts, "neurons per layer")
    with overlap:
        measure = st.radio("Measure", ["jaccard", "count"], horizontal=True, key="overlap_measure",
                           format_func=lambda m: {"jaccard": "Jaccard index", "count": "shared neurons"}[m])
        matrix = neuron_overlap(neurons, measure)
        st.plotly_chart(overlap_heatmap(matrix, measure), key="overlap")
        st.caption("A language's set holds the neurons found for its edit prompt and paraphrases. Neurons in "
                   "every compared language's set are the language-independent ones.")
        table(matrix, f"neuron overlap {measure}", index=True)
    with tables:
        table(neuron_summary(neurons), "neuron sets per language")
        table(top_neurons(neurons, lang, 100), f"top neurons {lang}")
        table(neurons.to_frame(), "all neurons of the sets")
