"""Setup: choose and load the model, choose the dataset."""

import streamlit as st
import torch

from app_support import state
from app_support.resources import UPLOAD_FORMATS, get_model, read_uploaded_dataset
from app_support.widgets import PAGES, errors_shown, finish, long_task, show_model, show_notice, table
from memla_core.data import load_bundled
from memla_core.models import ModelSpec

st.title("MEMLA workbench")
st.markdown(
    "Change one fact in a language model — *“The capital of France is **Paris**”* → ***Lyon*** — "
    "in one language, then see whether the change carries over to eleven others. "
    "**Steps:** 1 · load a model and a dataset here → 2 · pick a fact → 3 · find its knowledge "
    "neurons (optional) → 4 · edit the model and compare its answers before and after."
)
show_notice()

st.header("Model")
preset = state.preselected_model()
other = "Another model (local folder or Hugging Face id)"
choice = st.radio("Model", [preset, other], help="The first entry is the default model of this installation.")
name = preset if choice == preset else st.text_input("Folder or hub id", placeholder="/path/to/model or org/name").strip()
with st.expander("Device and precision"):
    devices = ["auto", "cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    device = st.selectbox("Device", devices, help="auto: the GPU when there is one, else the CPU.")
    dtype = st.selectbox("Precision", ["float32", "bfloat16", "float16"], help="float32 is the safe choice on a CPU.")
    download = st.checkbox("Download a hub model that is not in the local cache",
                           help="Off: only models already on this machine load, and an unknown id fails at once.")
spec = ModelSpec(name, device=device, dtype=dtype, allow_download=download)
if st.button("Load model", type="primary", disabled=not name, icon=":material/download:"):
    with long_task(f"Loading {name}") as task:
        get_model(spec, progress=lambda stage, fraction: task.show(fraction, stage))
    if task.ok:
        state.set_model(spec)
        finish(f"Model {name} is loaded. Next: pick a fact.")

if state.model_spec() is not None:
    show_model(get_model(state.model_spec()), state.model_spec())

st.header("Dataset")
data = state.dataset()
st.markdown(f"In use: **{data.name}** — {len(data)} facts in {len(data.languages)} languages.")
bundled_tab, upload_tab = st.tabs(["Bundled sample", "Upload a file"])
with bundled_tab:
    bundled = load_bundled()
    st.caption(f"{len(bundled)} hand-written facts in MKEB format, in {len(bundled.languages)} languages "
               "(see assets/DATASHEET.md).")
    if st.button("Use the bundled sample", disabled=data is bundled):
        state.set_dataset(load_bundled())
        finish("Using the bundled sample.")
with upload_tab:
    fmt = st.selectbox("Format", list(UPLOAD_FORMATS))
    uploaded = st.file_uploader("File", type=["json", "zip"], help="MKEB: a JSON list of records; MLaKE: zip the folder.")
    if uploaded is not None and st.button("Use this file", type="primary"):
        with errors_shown(f"Reading {uploaded.name}"):
            state.set_dataset(read_uploaded_dataset(UPLOAD_FORMATS[fmt], uploaded.name, uploaded.getvalue()))
            finish(f"Using {uploaded.name}. Next: pick a fact.")
for note in data.notes:
    st.caption(f"Import note: {note}")
with st.expander("Facts per relation and language"):
    table(data.stats(), "dataset statistics", index=True)
st.page_link(PAGES["facts"], label="Next: pick a fact", icon=":material/arrow_forward:")
