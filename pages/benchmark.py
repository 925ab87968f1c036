"""Paper results: the published tables of the MEMLA paper (mGPT 1.3B backbone)."""

import streamlit as st

from app_support.resources import paper
from app_support.routing import run_inside_app
from app_support.widgets import table
from memla_core.charts import grouped_bars, score_heatmap
from memla_core.views import ablation_grid, main_results_grid, multihop_grid, prompt_length_grid

run_inside_app()

st.title("Paper results")
st.info(
    "These are the numbers **published in the MEMLA paper** (Xie et al., 2024; backbone mGPT 1.3B), copied from its Tables 1 and 3–6 — not results computed here. "
    "Running the benchmark on your model from the app comes with the benchmark runner; until then, "
    "use the Edit page to score single facts.",
    icon=":material/info:",
)
st.caption("ES/PS: % of prompts where the new answer beats the old one. NS/QS: token F1 of neighborhood / "
           "multi-hop answers. *xx-avg*: mean over the 11 target languages other than the source.")

main, ablation, multihop, lengths = st.tabs(
    ["Tables 3–4: main results", "Table 5: ablation", "Table 6: multi-hop", "Table 1: prompt lengths"]
)
with main:
    c1, c2 = st.columns(2)
    source = c1.radio("Edits made in", ["en", "zh"], horizontal=True,
                      format_func={"en": "English (Table 3)", "zh": "Chinese (Table 4)"}.get)
    metric = c2.radio("Metric", ["ES", "PS", "NS"], horizontal=True)
    grid = main_results_grid(paper("main_results"), source, metric)
    st.plotly_chart(score_heatmap(grid, f"{metric}, edits made in {source}: method × target language"))
    table(grid, f"paper table {3 if source == 'en' else 4} {metric}", index=True)
with ablation:
    grid = ablation_grid(paper("ablation"))
    st.plotly_chart(grouped_bars(grid.T, "Ablation with Chinese as the edit language"))
    st.caption("w/o LSM / LIM: the language-specific / -independent editor is not masked to its neurons; "
               "w/o LSE / LIE: that editor is left out.")
    table(grid, "paper table 5 ablation", index=True)
with multihop:
    grid = multihop_grid(paper("multihop"))
    st.plotly_chart(score_heatmap(grid, "QS (multi-hop question score): method × setting", fmt=".2f"))
    table(grid, "paper table 6 multi-hop", index=True)
with lengths:
    grid = prompt_length_grid(paper("prompt_lengths"))
    st.caption("Average prompt length in MKEB (the paper does not say whether in words, characters or tokens).")
    table(grid, "paper table 1 prompt lengths", index=True)
