"""memla workbench: ``streamlit run app.py``.

Routes between the pages and draws the sidebar they share. The model named by the environment
variable ``MEMLA_APP_MODEL`` (default: the embedded Gemma 3 270M) is preselected on Setup.
"""

import streamlit as st

from app_support import state
from app_support.sidebar import draw_sidebar
from app_support.state import init_state
from app_support.url_state import autoload_model, restore_from_url, write_to_url
from app_support.widgets import PAGES

st.set_page_config(page_title="memla — multilingual knowledge editing", page_icon=":material/translate:", layout="wide")
init_state()
restore_from_url()  # a reload or a shared link brings back the fact, source language and settings

# The pages live in app_pages/, not pages/: a folder named pages/ next to app.py switches Streamlit
# into its legacy multipage mode, where a fresh server's first deep link (say /run-benchmark)
# shows "Page not found" before st.navigation takes over.
page = st.navigation(
    [
        st.Page(PAGES["home"], title="1 · Setup", icon=":material/settings:", url_path="setup", default=True),
        st.Page(PAGES["facts"], title="2 · Facts", icon=":material/list:", url_path="choose-fact"),
        st.Page(PAGES["neurons"], title="3 · Neurons", icon=":material/hub:", url_path="knowledge-neurons"),
        st.Page(PAGES["edit"], title="4 · Edit", icon=":material/edit:", url_path="edit-fact"),
        st.Page(PAGES["benchmark"], title="5 · Benchmark", icon=":material/table_chart:", url_path="run-benchmark"),
    ]
)
autoload_model()
draw_sidebar()
st.session_state[state.CURRENT_PAGE] = page.url_path  # widgets.bound hands settings across pages
page.run()
write_to_url()  # pages that stop early (st.stop) write it first: widgets.halt
