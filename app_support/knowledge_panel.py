"""What the loaded model knows before any edit, for the Facts and Edit pages.

Checks come from ``memla_core.knowledge`` (cached on disk per model), so after the first time a
fact's verdicts cost a file read.
"""

from __future__ import annotations

from typing import Sequence

import streamlit as st

from memla_core.data.schema import Fact
from memla_core.knowledge import KnowledgeCheck, check_knowledge
from memla_core.models import LoadedModel

from . import state
from .resources import get_model, is_loaded


def loaded_model() -> LoadedModel | None:
    """The session's model if it is already in memory (never loads one)."""
    spec = state.model_spec()
    return get_model(spec) if spec is not None and is_loaded(spec) else None


def fact_knowledge(lm: LoadedModel, fact: Fact, languages: Sequence[str] | None = None) -> dict[str, KnowledgeCheck]:
    """``{language: check}`` for one fact (a fraction of a second once cached)."""
    with st.spinner("Checking what the unedited model knows …"):
        return {c.language: c for c in check_knowledge(lm, [fact], languages)}


def known_fact_ids(lm: LoadedModel, facts: Sequence[Fact], language: str) -> set[str]:
    """Ids of the facts whose true answer the model produces in ``language``."""
    bar = st.progress(0.0, text=f"Checking every fact in {language} once (cached afterwards) …")
    checks = check_knowledge(lm, facts, [language], progress=lambda done, total: bar.progress(
        done / max(total, 1), text=f"Checking facts in {language}: {done} of {total} (cached afterwards) …"))
    bar.empty()
    return {c.fact_id for c in checks if c.known}
