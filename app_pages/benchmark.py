"""Benchmark: run methods over many facts (MKEB Tables 3–6) and compare with the paper."""

import streamlit as st

from app_support.bench_panel import paper_panel, results_panel, run_panel
from app_support.widgets import show_notice

st.title("Benchmark")
st.caption("Edit many facts with several methods and score every language, as in the paper's Tables 3–6; "
           "`memla bench` runs the same on the command line (and on many GPUs).")
show_notice()
run_tab, results_tab, paper_tab = st.tabs(["Run a benchmark", "Results next to the paper", "Paper tables"])
with run_tab:
    run_panel()
with results_tab:
    results_panel()
with paper_tab:
    paper_panel()
