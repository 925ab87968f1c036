"""Streamlit glue of the memla app: session state, shared resources, widgets, the sidebar.

Everything that imports streamlit lives here or in ``app_pages/``; ``memla_core`` never does.
"""
