"""The Edit page's general-ability check (paper §5.5): the bundled two-choice probe's accuracy and
the drift on ordinary text, for the unedited model and this session's edited model(s).

Measured on request (a button): the quick probe takes up to ~30 s a model state on the default
model, too long to add to every edit. The unedited reference is measured once per model and
shared by every session (``resources.unedited_ability``)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from memla_core.ability import QUICK_ITEMS, QUICK_SENTENCES, ability_summary
from memla_core.models import LoadedModel
from memla_core.session import EditOutcome
from memla_core.stack_session import measure_session_ability

from . import state
from .resources import ability_config, bundled_probe, unedited_ability
from .sidebar import method_title
from .widgets import bound, finish, long_task, table

MEASURE = "Measure general ability"
FULL = "Full probe (every item and sentence: minutes per model state)"


def ability_section(lm: LoadedModel, outcomes: dict[str, EditOutcome]) -> None:
    stack = state.stack()
    if not outcomes and not stack:
        return
    st.header("General ability")
    st.caption(f"Does the edit cost the model elsewhere? Two-choice questions of physical commonsense and inference "
               f"(NLI) in 12 languages, and the drift of its next-token distributions on ordinary sentences "
               f"(mean KL from the unedited model, nats per token). Quick: the first {QUICK_ITEMS} items of each task "
               f"and {QUICK_SENTENCES} sentences per language.")
    full = bound(st.toggle, FULL, state.ABILITY_FULL)
    edits = [*stack.edits, *(o.edit for o in outcomes.values())]
    key = {"edits": state.edit_ids(*edits), "full": full}
    if st.button(MEASURE, icon=":material/monitor_heart:",
                 help="The unedited model is measured once per model (shared), then each of your edited models."):
        _measure(lm, outcomes, full, key)
    shown = st.session_state[state.ABILITY]
    if shown and all(shown[k] == v for k, v in key.items()):
        _show(shown["reports"])
    elif shown:
        st.caption(f"The last measurement was of other edits or another probe size: “{MEASURE}” again.")


def _measure(lm: LoadedModel, outcomes: dict[str, EditOutcome], full: bool, key: dict) -> None:
    stack, config = state.stack(), ability_config(full)
    states = 1 + bool(stack) + len(outcomes)
    with long_task("Measuring general ability") as task:
        task.show(0.0, "The unedited model (once per model) …")
        before, reference = unedited_ability(lm, full)
        reports = [before]
        on_stack = f" on your {len(stack)} stacked edit(s)" if stack else ""
        if stack:
            task.show(len(reports) / states, "Your stacked edits …")
            reports.append(measure_session_ability(lm, bundled_probe(), reference, None, stack.edits, config,
                                                   label=f"your {len(stack)} stacked edit(s)"))
        for method, outcome in outcomes.items():
            task.cancel.check()
            title = method_title(method)
            task.show(len(reports) / states, f"After the {title} edit …")
            reports.append(measure_session_ability(lm, bundled_probe(), reference, outcome.edit, stack.edits, config,
                                                   label=f"after {title}{on_stack}"))
    if task.ok:
        st.session_state[state.ABILITY] = {**key, "reports": reports}
        finish("General ability measured.")


def _show(reports) -> None:
    summary = ability_summary(reports, "en")
    table(summary, "general ability")
    st.caption("Accuracy in % (chance = 50): each task in English and averaged over the 12 languages; each choice is "
               "scored by its mean log-probability per answer token. Drift 0 = the unedited model's distributions.")
    with st.expander("Every language"):
        frames = [report.table().assign(model=report.label) for report in reports]
        per_language = pd.concat(frames, ignore_index=True)
        table(per_language[["model", *[c for c in per_language.columns if c != "model"]]], "general ability per language")
