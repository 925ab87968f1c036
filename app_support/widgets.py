"""Small UI building blocks every page uses: tables with CSV download, guards, long tasks, errors."""

from __future__ import annotations

import logging
import re
from contextlib import contextmanager
from typing import Any, Callable, Iterator, NoReturn

import pandas as pd
import streamlit as st

from memla_core.data import DatasetError
from memla_core.data.schema import Fact
from memla_core.editing import EditDivergedError, EditError
from memla_core.models import LoadedModel, ModelLoadError, ModelSpec
from memla_core.session import Cancelled, CancelToken
from memla_core.views import display_table, format_count, language_label

from . import state
from .resources import get_model, is_loaded

log = logging.getLogger("memla.app")

PAGES = {
    "home": "app_pages/home.py",
    "facts": "app_pages/facts.py",
    "neurons": "app_pages/neurons.py",
    "edit": "app_pages/edit.py",
    "benchmark": "app_pages/benchmark.py",
}


# --------------------------------------------------------------------------- widgets bound to state


def bound(widget: Callable[..., Any], label: str, name: str, default: Any = None, **kwargs) -> Any:
    """A widget whose value lives in ``st.session_state[name]`` and survives page switches.

    Streamlit forgets a widget's own state when its page is not shown; the value is therefore
    copied to a plain key after every change and handed back to the widget when it reappears.
    A setting drawn on two pages (the source language, the IG settings) is two widgets to
    Streamlit, which on the first run of the second page would give that one its default: the
    value is handed back whenever the widget was last drawn on another page.
    """
    key = state.widget_key(name)
    if name not in st.session_state:
        st.session_state[name] = default
    page, drawn_on = st.session_state.get(state.CURRENT_PAGE), state.widget_page(name)
    if key not in st.session_state or st.session_state.get(drawn_on) != page:
        st.session_state[key] = st.session_state[name]
    st.session_state[drawn_on] = page
    value = widget(label, key=key, **kwargs)
    st.session_state[name] = value
    return value


LANGUAGE_BOX_WIDTH = 280
"""Pixels of a language selectbox: the longest label ("Portuguese (pt)") and the arrow fit. Draw it
on its own row, not in a column, which a narrow window shrinks until it reads "Ko…"."""


def language_select(label: str, codes: list[str], name: str, **kwargs) -> str:
    if st.session_state[name] not in codes:
        state.reset_setting(name, codes[0])
    return bound(st.selectbox, label, name, options=codes, format_func=language_label, width=LANGUAGE_BOX_WIDTH,
                 **kwargs)


# --------------------------------------------------------------------------- tables


def _file_stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "table"


def table(frame: pd.DataFrame, name: str, styled: Any = None, index: bool = False, **kwargs) -> None:
    """A table and, under it, a button downloading it as CSV (``name`` becomes the file name).
    Without ``styled`` the table is drawn by ``views.display_table`` (no "None" cells, rounded)."""
    st.dataframe(styled if styled is not None else display_table(frame), hide_index=not index, **kwargs)
    st.download_button(
        f"Download {name} (CSV)",
        frame.to_csv(index=index).encode("utf-8"),
        file_name=f"{_file_stem(name)}.csv",
        mime="text/csv",
        key=f"csv:{name}",
        icon=":material/download:",
        on_click="ignore",  # a download needs no rerun
    )


# --------------------------------------------------------------------------- model


def show_model(lm: LoadedModel, spec: ModelSpec) -> None:
    """What is loaded: architecture, device, size, and the model's licence notice."""
    st.markdown(f"Loaded: **{spec.name_or_path}** ({lm.model.config.model_type}, {spec.dtype})")
    cols = st.columns(3)
    cols[0].metric("Device", str(lm.device))
    cols[1].metric("Parameters", format_count(lm.parameter_count()))
    cols[2].metric("Layers × MLP neurons", f"{lm.num_layers} × {lm.num_neurons:,}")
    if lm.licence_notice:
        with st.expander("Licence notice of this model — please read", icon=":material/gavel:"):
            st.markdown(re.sub(r"^#+ ", "##### ", lm.licence_notice, flags=re.M))  # headings sized for a box


# --------------------------------------------------------------------------- guards


def require_model() -> LoadedModel:
    """The session's model, or a prompt to load it (the rest of the page is not drawn)."""
    spec = state.model_spec()
    if spec is not None:
        if is_loaded(spec):
            return get_model(spec)
        with st.spinner(f"Loading {spec.name_or_path} …"):
            with errors_shown("Loading the model"):
                return get_model(spec)
        halt()
    st.info("No model is loaded yet. Load one on the Setup page first.")
    st.page_link(PAGES["home"], label="Go to Setup", icon=":material/settings:")
    halt()


def halt() -> NoReturn:
    """``st.stop()``, after writing the session's choices into the URL (``url_state``): once a run
    is stopped, every Streamlit call, ``st.session_state`` included, stops it again, so nothing
    after ``st.stop()`` can write them."""
    from .url_state import write_to_url  # url_state builds on this module

    write_to_url()
    st.stop()


def require_fact() -> Fact:
    fact = state.current_fact()
    if fact is None:
        st.info("Pick a fact to work on first.")
        st.page_link(PAGES["facts"], label="Go to Facts", icon=":material/list:")
        halt()
    return fact


def show_notice() -> None:
    """The message left by the previous run (a finished or stopped task)."""
    notice = state.pop_notice()
    if notice:
        kind, text = notice
        {"success": st.success, "warning": st.warning}.get(kind, st.info)(text)


def finish(message: str) -> None:
    """End a successful action: rerun so the sidebar and results show the new state."""
    state.notify(message, "success")
    st.rerun()


# --------------------------------------------------------------------------- errors and long tasks


def error_message(err: BaseException, action: str) -> str:
    """A message for people, not a traceback; the traceback goes to the server log."""
    if isinstance(err, Cancelled):
        return str(err)
    if isinstance(err, EditDivergedError):
        step = err.trace[-1]["step"] if err.trace else "?"
        return (
            f"{action} failed: the optimisation diverged at step {step} (the loss became NaN or "
            "infinite). Nothing was applied. Lower the learning rate or the number of steps and try again."
        )
    if isinstance(err, DatasetError):
        shown = "\n".join(f"- {p}" for p in err.problems[:15])
        more = f"\n- … and {len(err.problems) - 15} more" if len(err.problems) > 15 else ""
        return f"{action} failed: the file does not validate.\n\n{shown}{more}"
    if isinstance(err, (EditError, ModelLoadError, ValueError, KeyError, FileNotFoundError)):
        text = err.args[0] if isinstance(err, KeyError) and err.args else err
        return f"{action} failed: {text}"
    if isinstance(err, MemoryError) or "out of memory" in str(err).lower():
        return f"{action} failed: out of memory. Use a smaller model, fewer languages or fewer IG steps."
    return f"{action} failed unexpectedly ({type(err).__name__}: {err}). The server log has the details."


@contextmanager
def errors_shown(action: str) -> Iterator[None]:
    """Show any error of the block as ``st.error`` (Streamlit's own stop/rerun signals pass)."""
    try:
        yield
    except Cancelled as err:
        st.info(error_message(err, action))
    except Exception as err:  # noqa: BLE001 - every failure is shown, none as a traceback
        log.exception("%s failed", action)
        st.error(error_message(err, action))


class Task:
    """Progress of one long task: a bar, a line of text and the session's stop flag."""

    def __init__(self, bar, token: CancelToken):
        self.bar = bar
        self.cancel = token
        self.ok = False

    def show(self, fraction: float, text: str) -> None:
        self.bar.progress(min(max(float(fraction), 0.0), 1.0), text=text)

    def counter(self, what: str) -> Callable[[int, int, str], None]:
        """A ``progress(done, total, item)`` callback for core functions."""
        return lambda done, total, item: self.show(done / max(total, 1), f"{what}: {done}/{total} — {item}")


def _stop(token: CancelToken, label: str) -> None:
    token.cancel()
    state.notify(f"Stopped “{label}” on request; nothing was changed.")


@contextmanager
def long_task(label: str) -> Iterator[Task]:
    """A status box with a progress bar and a Stop button; errors end up in the box, readable.

    Pressing Stop reruns the page: Streamlit interrupts this run at its next progress update,
    and the token tells core code to stop at its next check.
    """
    token = CancelToken()
    stop_slot = st.empty()
    stop_slot.button("Stop computing", key=f"stop:{label}", on_click=_stop, args=(token, label), icon=":material/stop:")
    with st.status(label, expanded=True) as status:
        task = Task(st.progress(0.0, text="starting …"), token)
        try:
            yield task
        except Cancelled as err:
            status.update(label=f"{label}: stopped", state="error")
            st.info(error_message(err, label))
        except Exception as err:  # noqa: BLE001 - shown to the user, traceback to the log
            log.exception("%s failed", label)
            status.update(label=f"{label}: failed", state="error")
            st.error(error_message(err, label))
        except BaseException:
            # Streamlit ends a run when the page is used meanwhile (another click, another page):
            # say so on the next run. The Stop button's own message replaces this one.
            state.notify(f"“{label}” was interrupted because the page was used meanwhile; nothing was "
                         "changed. Start it again and wait for it to finish.")
            raise
        else:
            task.ok = True
            status.update(label=f"{label}: done", state="complete", expanded=False)
    stop_slot.empty()
