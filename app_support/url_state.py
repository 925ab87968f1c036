"""What survives a reload or travels in a shared link: the picked fact and source language, the
integrated-gradients settings (Neurons page) and the edit settings (Edit page: the methods chosen
and the preset each method's form starts from) live in the URL's query parameters::

    ?fact=geo-capital-france&source=fr&ig_steps=8&ig_baseline=eos&ig_threshold=0.2
     &ig_langs=en,zh,fr&methods=memla,ft&preset=memla:paper

and the default model loads by itself on a session's first run. A value a link gets wrong (an
unknown method, 0 IG steps) is left out with one warning; the rest of the link still applies.

A reload starts a new Streamlit session with empty ``st.session_state``; the model itself stays
in memory (``resources.get_model``), so only these choices have to come back.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping

import streamlit as st

from memla_core.bench import results_dir
from memla_core.bench.job import find_job
from memla_core.bounds import check_results_name
from memla_core.editing import METHODS, presets
from memla_core.models import DEFAULT_MODEL, ModelSpec

from . import state
from .forms import IG_BASELINES, IG_STEPS_RANGE, IG_THRESHOLD_RANGE
from .resources import get_model, is_loaded
from .widgets import long_task

FACT_PARAM, SOURCE_PARAM = "fact", "source"
STEPS_PARAM, BASELINE_PARAM, THRESHOLD_PARAM, LANGUAGES_PARAM = "ig_steps", "ig_baseline", "ig_threshold", "ig_langs"
METHODS_PARAM, PRESET_PARAM = "methods", "preset"
BENCH_PARAM = "bench"
"""The Benchmark page's results file (its name, without .csv): a reload finds the run writing it."""
NEURON_PARAMS = {STEPS_PARAM: state.IG_STEPS, BASELINE_PARAM: state.IG_BASELINE, THRESHOLD_PARAM: state.IG_THRESHOLD,
                 LANGUAGES_PARAM: state.IG_LANGUAGES}
"""Query parameter -> the session's integrated-gradients setting."""
AUTOLOAD_ENV = "MEMLA_APP_AUTOLOAD"
"""``1``: load the preselected model on a session's first run; ``0``: wait for Setup. Default:
``1`` for the embedded default model, ``0`` for any other (loading it may take minutes)."""
_RESTORED = "url_restored"
_AUTOLOADED = "model_autoloaded"


def _listed(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_settings(params: Mapping[str, str], languages: set[str]) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """A link's neuron and edit settings, checked: ``(values, presets, problems)``.

    ``values`` maps session keys (``state.IG_STEPS`` …, ``state.METHODS_CHOSEN``) to the values to
    restore, ``presets`` a method to the preset its form starts from; ``problems`` has one short
    line per value left out (the rest of the link still applies). ``languages``: the dataset's."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    low, high = IG_STEPS_RANGE
    if STEPS_PARAM in params:
        text = params[STEPS_PARAM].strip()
        if text.isdigit() and low <= int(text) <= high:
            values[state.IG_STEPS] = int(text)
        else:
            problems.append(f"{STEPS_PARAM}={text!r} (a whole number from {low} to {high})")
    if BASELINE_PARAM in params:
        text = params[BASELINE_PARAM].strip()
        if text in IG_BASELINES:
            values[state.IG_BASELINE] = text
        else:
            problems.append(f"{BASELINE_PARAM}={text!r} (one of {', '.join(IG_BASELINES)})")
    if THRESHOLD_PARAM in params:
        text = params[THRESHOLD_PARAM].strip()
        low_t, high_t = IG_THRESHOLD_RANGE
        try:
            threshold = float(text)
        except ValueError:
            threshold = math.nan
        if low_t <= threshold <= high_t:  # False for NaN
            values[state.IG_THRESHOLD] = round(threshold, 4)
        else:
            problems.append(f"{THRESHOLD_PARAM}={text!r} (a number from {low_t:g} to {high_t:g})")
    if LANGUAGES_PARAM in params:
        codes = _listed(params[LANGUAGES_PARAM])
        unknown = [code for code in codes if code not in languages]
        if unknown:
            problems.append(f"{LANGUAGES_PARAM}: {', '.join(map(repr, unknown))} (not a language of this dataset)")
        values[state.IG_LANGUAGES] = list(dict.fromkeys(code for code in codes if code in languages))
    if METHODS_PARAM in params:
        names = _listed(params[METHODS_PARAM])
        unknown = [name for name in names if name not in METHODS]
        if unknown:
            problems.append(f"{METHODS_PARAM}: {', '.join(map(repr, unknown))} (known: {', '.join(METHODS)})")
        known = list(dict.fromkeys(name for name in names if name in METHODS))
        if known or not names:  # a link with only unknown methods keeps the default choice
            values[state.METHODS_CHOSEN] = known
    chosen: dict[str, str] = {}
    for item in _listed(params.get(PRESET_PARAM, "")):
        method, sep, preset = item.rpartition(":")
        targets = [method] if sep else list(METHODS)  # a bare "paper": every method's form starts from it
        if preset in presets.PRESETS and all(name in METHODS for name in targets):
            chosen.update(dict.fromkeys(targets, preset))
        else:
            problems.append(f"{PRESET_PARAM}: {item!r} (method:preset, the preset one of {', '.join(presets.PRESETS)})")
    return values, chosen, problems


def settings_params(session: Mapping[str, Any]) -> dict[str, str]:
    """The session's neuron and edit settings as query parameters (``parse_settings`` reads them
    back). Presets are written for the chosen methods whose form offered one (for the model type
    the Edit page last drew), or that a link named and whose form has not been drawn yet."""
    params = {
        STEPS_PARAM: str(int(session[state.IG_STEPS])),
        BASELINE_PARAM: str(session[state.IG_BASELINE]),
        THRESHOLD_PARAM: f"{round(float(session[state.IG_THRESHOLD]), 4):g}",
        LANGUAGES_PARAM: ",".join(session[state.IG_LANGUAGES]),
        METHODS_PARAM: ",".join(session[state.METHODS_CHOSEN]),
    }
    linked = session.get(state.LINKED_PRESETS) or {}  # a link's presets, until their forms are drawn
    kind = session.get(state.PRESET_MODEL_TYPE)
    chosen = []
    for method in session[state.METHODS_CHOSEN]:
        key = state.method_preset(method, kind) if kind is not None else None
        preset = session[key] if key is not None and key in session else linked.get(method)
        if preset:
            chosen.append(f"{method}:{preset}")
    if chosen:
        params[PRESET_PARAM] = ",".join(chosen)
    return params


def restore_from_url() -> None:
    """On a session's first run, take the fact, source language and settings from the URL."""
    if st.session_state.get(_RESTORED):
        return
    st.session_state[_RESTORED] = True
    params = {key: st.query_params[key] for key in st.query_params}
    problems: list[str] = []
    fact_id = params.get(FACT_PARAM)
    if fact_id and fact_id in {fact.example_id for fact in state.dataset()}:
        state.set_fact(fact_id)
        source = params.get(SOURCE_PARAM)
        fact = state.current_fact()
        if source and fact is not None and source in fact.languages:
            state.reset_setting(state.SOURCE_LANGUAGE, source)
        elif source:
            problems.append(f"{SOURCE_PARAM}={source!r} (not a language of this fact)")
    elif fact_id:
        problems.append(f"{FACT_PARAM}={fact_id!r} (not in {state.dataset().name}; pick one on Facts)")
    bench = params.get(BENCH_PARAM)
    if bench:
        path = _results_path(bench)
        if path is not None and (path.exists() or find_job(path) is not None):
            st.session_state[state.BENCH_FILE] = str(path)
            st.session_state[state.BENCH_FROM_LINK] = True
        else:
            problems.append(f"{BENCH_PARAM}={bench!r} (no such results file in {results_dir()})")
    values, chosen, bad = parse_settings(params, set(state.dataset().languages))
    for key, value in values.items():
        state.reset_setting(key, value)
    st.session_state[state.LINKED_NEURONS] = {key: values[key] for key in NEURON_PARAMS.values() if key in values}
    st.session_state[state.LINKED_PRESETS] = chosen
    problems += bad
    if problems:
        state.notify("Left out of the link, the rest of it applies: " + "; ".join(problems) + ".", "warning")


def _results_path(stem: str) -> Path | None:
    try:
        return results_dir() / f"{check_results_name(stem)}.csv"
    except ValueError:
        return None


def write_to_url() -> None:
    """Mirror the session's fact, source language, settings and results file into the URL (the
    settings only with a fact: they belong to the pages that work on one).

    ``app.py`` calls it after the page; a page that stops early calls it first (``widgets.halt``):
    after ``st.stop()`` every Streamlit call ends the run at once."""
    fact_id = st.session_state[state.FACT_ID]
    wanted: dict[str, str] = {}
    bench = st.session_state[state.BENCH_FILE]
    if bench and Path(bench).parent == results_dir():
        wanted[BENCH_PARAM] = Path(bench).stem
    if fact_id:
        wanted |= {FACT_PARAM: fact_id, SOURCE_PARAM: st.session_state[state.SOURCE_LANGUAGE],
                   **settings_params(st.session_state)}
    if {key: st.query_params[key] for key in st.query_params} != wanted:
        st.query_params.from_dict(wanted)


def should_autoload() -> bool:
    default = "1" if state.preselected_model() == DEFAULT_MODEL else "0"
    return os.environ.get(AUTOLOAD_ENV, default) == "1"


def autoload_model() -> None:
    """Load the preselected model once per session, with progress; failures leave Setup to the user."""
    if st.session_state.get(_AUTOLOADED) or state.model_spec() is not None or not should_autoload():
        return
    st.session_state[_AUTOLOADED] = True
    spec = ModelSpec(state.preselected_model())
    if not is_loaded(spec):  # after a reload it is usually still in memory: nothing to show
        with long_task(f"Loading {spec.name_or_path} (other models: Setup)") as task:
            get_model(spec, progress=lambda stage, fraction: task.show(fraction, stage))
        if not task.ok:
            return
    state.set_model(spec)
