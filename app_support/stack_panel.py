"""The Edit page's edit stack: keep edits in a row, see which still hold in which language, pop or
revert all. The stack lives in the session (``state.STACK``, a ``SessionStack``) and reaches the
shared model only inside ``session.edited`` (memla_core/stack_session.py)."""

from __future__ import annotations

import math

import streamlit as st

from memla_core.data.schema import Fact
from memla_core.models import LoadedModel
from memla_core.session import EditOutcome
from memla_core.stack_session import SessionStack, held_share, retention_grid
from memla_core.views import style_scores

from . import state
from .sidebar import method_title
from .widgets import finish, long_task, table

ADD, POP, REVERT_ALL, RESCORE = "Add to stack", "Pop the newest edit", "Revert all stacked edits", "Re-evaluate the stack"


def stack_note() -> None:
    """One line under the Apply button when edits are stacked: what the next edit is applied on."""
    stack = state.stack()
    if stack:
        st.caption(f"Your edit is computed and scored **on top of your {len(stack)} stacked edit(s)** "
                   "(see *Edit stack* below); “before” means the stacked model.")


def stack_section(lm: LoadedModel, fact: Fact, targets: list[str], outcomes: dict[str, EditOutcome]) -> None:
    stack = state.stack()
    st.header("Edit stack")
    st.caption("Keep edits in a row, of this fact or others: each new edit is computed on the model with the stacked "
               "ones applied. The stack is yours alone, applied only while your answers are computed; popping "
               "and reverting restore the shared model bit for bit.")
    if outcomes:
        methods = list(outcomes)
        method = methods[0]
        if len(methods) > 1:
            method = st.radio("Edit to add to the stack", methods, format_func=method_title, horizontal=True,
                              key="stack_method")
        if st.button(ADD, icon=":material/add:",
                     help=f"Keep the {method_title(method)} edit of {fact.example_id} and apply the next edits on top."):
            _push(lm, stack, fact, outcomes[method], targets)
    elif not stack:
        st.caption("Apply an edit, then add it here.")
    if not stack:
        return
    pop_col, revert_col, rescore_col = st.columns(3)
    if pop_col.button(POP, icon=":material/undo:", help="Remove the last edit added; the others stay."):
        _pop(lm, stack, targets)
    revert_col.button(REVERT_ALL, icon=":material/delete_sweep:", on_click=_revert_all,
                      help="Empty the stack: answers come from the unedited model again.")
    if rescore_col.button(RESCORE, icon=":material/refresh:", help="Score the stack again in the target languages chosen above."):
        _rescore(lm, stack, targets)
    _show(stack)


def _push(lm: LoadedModel, stack: SessionStack, fact: Fact, outcome: EditOutcome, targets: list[str]) -> None:
    state.set_stack(stack.push(fact, outcome.edit))
    _score(lm, state.stack(), targets, f"{method_title(outcome.method)} edit of {fact.example_id} added to the stack")


def _pop(lm: LoadedModel, stack: SessionStack, targets: list[str]) -> None:
    popped = stack.entries[-1]
    state.set_stack(stack.pop())
    _score(lm, state.stack(), targets, f"Popped {popped.label} from the stack")


def _rescore(lm: LoadedModel, stack: SessionStack, targets: list[str]) -> None:
    st.session_state[state.STACK_SCORES] = None
    _score(lm, stack, targets, "The stack was scored again")


def _revert_all() -> None:
    state.set_stack(SessionStack())
    state.notify("Every stacked edit was reverted: answers come from the unedited model again.")


def _score(lm: LoadedModel, stack: SessionStack, targets: list[str], message: str) -> None:
    """Score every stacked fact with the whole stack applied, keep the rows, rerun."""
    rows = None
    if stack:
        with long_task("Scoring the edit stack") as task:
            rows = stack.retention(lm, targets, task.counter("Scoring the stacked facts"), task.cancel)
        if not task.ok:
            st.session_state[state.NOTICE] = ("info", f"{message}; it was not scored (use “{RESCORE}”).")
            st.rerun()
    st.session_state[state.STACK_SCORES] = {"edits": state.edit_ids(*stack.edits), "rows": rows}
    finish(f"{message}.")


def _show(stack: SessionStack) -> None:
    scores = st.session_state[state.STACK_SCORES]
    if not scores or scores["edits"] != state.edit_ids(*stack.edits) or scores["rows"] is None:
        st.info(f"{len(stack)} edit(s) stacked, not scored yet: use “{RESCORE}”.")
        return
    rows = scores["rows"]
    grid = retention_grid(rows)
    grid["method"] = grid["method"].map(method_title)
    languages = [c for c in grid.columns if c not in ("#", "fact", "method", "source")]
    st.subheader("Which stacked edits still hold")
    share = held_share(rows)
    held = "" if math.isnan(share) else f"; {100 * share:.0f}% of the (edit, language) pairs hold"
    st.markdown(f"**{len(stack)} edit(s) stacked**, newest last{held}.")
    table(grid, "edit stack ES", styled=style_scores(grid, languages))
    scored_in = ", ".join(dict.fromkeys(rows["target_lang"])) or "no language"
    st.caption(f"**ES** (%) of each stacked fact's edit prompt in each target language ({scored_in}), scored on "
               "the model with the whole stack applied: 100 = the new answer is still preferred. — : the fact has "
               f"no such language. Changed the target languages? Use “{RESCORE}”.")
    with st.expander("Every stacked fact and language (ES, PS, the model's answer)"):
        table(rows, "edit stack scores")
