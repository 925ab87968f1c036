"""Every ``st.session_state`` key the app uses, its default, and the transitions between them.

A session's edit (``EDITS``) and edit stack (``STACK``) live here and nowhere else: the model is
shared by all sessions and is edited only inside ``memla_core.session.edited`` while this session
computes.
"""

from __future__ import annotations

import os
from typing import Any

import streamlit as st

from memla_core.data import MKEBDataset, load_bundled
from memla_core.data.schema import Fact
from memla_core.models import DEFAULT_MODEL, ModelSpec
from memla_core.neurons import NeuronConfig, NeuronSets
from memla_core.session import EditOutcome
from memla_core.stack_session import SessionStack

MODEL_ENV = "MEMLA_APP_MODEL"
"""Environment variable naming the model the Setup page preselects (tests: a tiny checkpoint)."""

# What this session works on
MODEL_SPEC = "model_spec"  # ModelSpec of the loaded model, or None
DATASET = "dataset"  # MKEBDataset
FACT_ID = "fact_id"  # id of the current fact, or None
SOURCE_LANGUAGE = "source_language"
NEURONS = "neurons"  # NeuronSets of the current fact, or None
EDITS = "edits"  # {method: EditOutcome}: this session's edits of the current fact
STACK = "edit_stack"  # SessionStack: edits kept in a row, applied beneath EDITS (any fact)
STACK_SCORES = "edit_stack_scores"  # {"edits": ids of the stack's edits, "rows": SessionStack.retention}, or None
ABILITY = "ability"  # {"edits": ids of the edits measured, "full": bool, "reports": [AbilityReport]}, or None
CURRENT_PAGE = "current_page"  # url path of the page this run draws (set by app.py)
NOTICE = "notice"  # (kind, text) to show once on the next run: kind is "info" or "success"
FREE_TEXT = "free_text_answers"  # {"prompt": str, "answers": {column: text}}
BENCH_JOB = "bench_job"  # this session's latest BenchJob (running or finished), or None
BENCH_FILE = "bench_file"  # the results file the Benchmark page shows, or None
BENCH_FROM_LINK = "bench_from_link"  # True until the Benchmark page looked for a run writing the link's BENCH_FILE

# Settings (plain keys that survive page switches; widgets are bound to them)
IG_STEPS = "ig_steps"
IG_BASELINE = "ig_baseline"
IG_THRESHOLD = "ig_threshold"
IG_LANGUAGES = "ig_languages"
TARGET_LANGUAGES = "target_languages"
METHODS_CHOSEN = "methods_chosen"
ABILITY_FULL = "ability_full"  # True: the whole probe, False: AbilityConfig.quick()

# What a link (the URL's query parameters) asked for, kept until the form it concerns is first drawn
LINKED_PRESETS = "linked_presets"  # {method: "tuned" | "paper"}: the preset each method's form starts from
PRESET_MODEL_TYPE = "preset_model_type"  # model type whose preset keys the Edit page last used (for the URL)
LINKED_NEURONS = "linked_neurons"  # {IG setting key: value}: a link's IG settings, which win over a preset's


def method_setting(method: str, field: str) -> str:
    """Key of one field of a method's config form, e.g. ``memla:lr``."""
    return f"{method}:{field}"


def method_preset(method: str, model_type: str) -> str:
    """Key of the preset a method's form started from ("tuned" or "paper") for one model type."""
    return f"preset:{method}:{model_type}"


def bench_setting(field: str) -> str:
    """Key of one field of the Benchmark page's run form, e.g. ``bench:methods``."""
    return f"bench:{field}"


def widget_key(name: str) -> str:
    """Key of the widget bound to the setting ``name`` (see ``widgets.bound``)."""
    return f"widget:{name}"


def widget_page(name: str) -> str:
    """Key of the page on which the widget bound to ``name`` was last drawn (``widgets.bound``)."""
    return f"widget-page:{name}"

_DEFAULT_NEURONS = NeuronConfig()
DEFAULTS: dict[str, Any] = {
    MODEL_SPEC: None,
    FACT_ID: None,
    SOURCE_LANGUAGE: "en",
    NEURONS: None,
    EDITS: {},
    STACK: SessionStack(),
    STACK_SCORES: None,
    ABILITY: None,
    CURRENT_PAGE: None,
    NOTICE: None,
    FREE_TEXT: None,
    BENCH_JOB: None,
    BENCH_FILE: None,
    BENCH_FROM_LINK: False,
    IG_STEPS: _DEFAULT_NEURONS.steps,
    IG_BASELINE: _DEFAULT_NEURONS.baseline,
    IG_THRESHOLD: _DEFAULT_NEURONS.threshold,
    IG_LANGUAGES: list(_DEFAULT_NEURONS.independent_languages),
    TARGET_LANGUAGES: None,  # None = a short default list for the current fact
    METHODS_CHOSEN: ["memla"],
    ABILITY_FULL: False,
    LINKED_PRESETS: {},
    LINKED_NEURONS: {},
    PRESET_MODEL_TYPE: None,
}


def init_state() -> None:
    """Give every key its default once per session (``app.py`` calls this on every run)."""
    for key, value in DEFAULTS.items():
        if key not in st.session_state:
            st.session_state[key] = value.copy() if isinstance(value, (dict, list)) else value
    if DATASET not in st.session_state:
        st.session_state[DATASET] = load_bundled()


def preselected_model() -> str:
    return os.environ.get(MODEL_ENV) or DEFAULT_MODEL


def model_spec() -> ModelSpec | None:
    return st.session_state[MODEL_SPEC]


def dataset() -> MKEBDataset:
    return st.session_state[DATASET]


def current_fact() -> Fact | None:
    fact_id = st.session_state[FACT_ID]
    if fact_id is None:
        return None
    try:
        return dataset().get(fact_id)
    except KeyError:
        st.session_state[FACT_ID] = None
        return None


def forget_results() -> None:
    """Drop neurons and edits (they belong to one model and one fact)."""
    st.session_state[NEURONS] = None
    st.session_state[EDITS] = {}
    st.session_state[FREE_TEXT] = None
    st.session_state[ABILITY] = None


def set_model(spec: ModelSpec) -> None:
    if st.session_state[MODEL_SPEC] != spec:
        forget_results()
        set_stack(SessionStack())  # edits belong to one model
    st.session_state[MODEL_SPEC] = spec


def set_dataset(data: MKEBDataset) -> None:
    st.session_state[DATASET] = data
    st.session_state[FACT_ID] = None
    forget_results()


def set_fact(fact_id: str | None) -> None:
    if fact_id == st.session_state[FACT_ID]:
        return
    if st.session_state[EDITS]:
        notify("Your edit of the previous fact was reverted: an edit belongs to one fact.")
    st.session_state[FACT_ID] = fact_id
    forget_results()
    fact = current_fact()
    if fact is not None and st.session_state[SOURCE_LANGUAGE] not in fact.languages:
        st.session_state[SOURCE_LANGUAGE] = fact.language_codes[0]


def neuron_config(fact: Fact | None = None) -> NeuronConfig:
    """The IG settings chosen in this session (languages limited to the fact's)."""
    languages = st.session_state[IG_LANGUAGES]
    if fact is not None:
        languages = [code for code in languages if code in fact.languages]
    return NeuronConfig(
        steps=int(st.session_state[IG_STEPS]),
        baseline=st.session_state[IG_BASELINE],
        threshold=round(float(st.session_state[IG_THRESHOLD]), 4),  # a slider's float, e.g. 0.30000000000000004
        independent_languages=tuple(languages),
    )


def neurons_for(fact: Fact, source_language: str, config: NeuronConfig) -> NeuronSets | None:
    """This session's neurons if they match the fact, source language and settings."""
    found = st.session_state[NEURONS]
    if found is None or found.fact_id != fact.example_id or found.source_language != source_language:
        return None
    return found if found.config == config else None


def edits() -> dict[str, EditOutcome]:
    return st.session_state[EDITS]


def stack() -> SessionStack:
    return st.session_state[STACK]


def set_stack(new: SessionStack) -> None:
    """Replace the session's edit stack; its scores are redone, and an unstacked edit (computed on
    top of the previous stack) is dropped."""
    st.session_state[STACK] = new
    st.session_state[STACK_SCORES] = None
    st.session_state[EDITS] = {}
    st.session_state[FREE_TEXT] = None
    st.session_state[ABILITY] = None


def edit_ids(*edits: Any) -> tuple[int, ...]:
    """Identity of a set of this session's ``Edit`` objects (they live in the session: ids are stable)."""
    return tuple(id(edit) for edit in edits)


def reset_setting(name: str, value: Any) -> None:
    """Give a setting a new value, also in its widget (e.g. options changed with the fact)."""
    st.session_state[name] = value
    st.session_state.pop(widget_key(name), None)


def notify(text: str, kind: str = "info") -> None:
    st.session_state[NOTICE] = (kind, text)


def pop_notice() -> tuple[str, str] | None:
    notice = st.session_state[NOTICE]
    st.session_state[NOTICE] = None
    return notice
