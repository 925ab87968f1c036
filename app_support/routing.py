"""Make every page run inside ``app.py`` (its state, navigation and sidebar), even on a deep link.

Streamlit treats a ``pages/`` folder next to the main script as a legacy multipage app until the
main script has called ``st.navigation`` once in the server process. The very first request of a
fresh server for, say, ``/facts`` would therefore run ``pages/facts.py`` on its own. Each page calls
``run_inside_app()`` first: in that one case it switches the legacy mode off and reruns, and
Streamlit then runs ``app.py``, which routes to the requested page.
"""

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager


def run_inside_app() -> None:
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()
