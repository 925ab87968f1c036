"""The Edit page's MEND section: whether the loaded model has a trained MEND hypernetwork and,
when it has none, a "Train MEND for this model" action that trains it in the background with a
progress bar (step, loss, time left), a Stop button and resume. The work is
``memla_core.editing.mend_job``; nothing here trains unless the button is pressed."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import streamlit as st

from memla_core.editing.mend import MendConfig
from memla_core.editing.mend_job import (
    MendCheckpoint,
    MendTrainingJob,
    TrainingStatus,
    bundled_training_data,
    data_languages,
    find_training,
    mend_checkpoint,
)
from memla_core.editing.mend_training import MendTrainConfig
from memla_core.models import LoadedModel
from memla_core.views import language_label

from . import state
from .widgets import error_message

POLL_SECONDS = 2.0
"""How often the progress of a running training refreshes."""

# Widget keys of the training form (its values need not survive a page switch).
LANGUAGES_KEY = "mend_train:languages"
STEPS_KEY = "mend_train:steps"
RESTART_KEY = "mend_train:restart"


def mend_section(lm: LoadedModel, configs: Mapping[str, Any]) -> bool:
    """Drawn when MEND is among the chosen methods (``configs``: method -> its config); True when
    nothing keeps MEND from editing (it is not chosen, or its hypernetwork is trained)."""
    config = next((c for c in configs.values() if isinstance(c, MendConfig)), None)
    if config is None:
        return True
    checkpoint = mend_checkpoint(lm, config)
    job = find_training(checkpoint.folder)
    if job is not None and job.status().active:
        st.markdown("**Training MEND for this model**")
        training_monitor(job)
        return False
    if checkpoint.trained:
        languages = ", ".join(checkpoint.languages) or "?"
        st.caption(f":material/check_circle: MEND's hypernetwork for this model was trained on {languages} "
                   f"({checkpoint.steps_done} steps), in `{checkpoint.folder}`; the languages it was trained on "
                   "shape how its edits carry over to others.")
        return True
    st.warning(_missing_message(lm, checkpoint), icon=":material/model_training:")
    if job is not None and job.error is not None:
        hint = " Tick *Start over* below to discard that run." if checkpoint.steps_done else ""
        st.error(error_message(job.error, "Training MEND") + hint)
    _train_form(lm, config, checkpoint)
    return False


def _missing_message(lm: LoadedModel, checkpoint: MendCheckpoint) -> str:
    text = (f"**MEND cannot edit yet: there is no MEND hypernetwork for {lm.spec.name_or_path}.** MEND turns the "
            "edit's gradient into a weight change with a small network trained once per model (Mitchell et al. "
            f"2022). Train it below, or with `memla train-mend --model {lm.spec.name_or_path}`; it is saved in "
            f"`{checkpoint.folder}` and used from then on.")
    if checkpoint.trained_for is not None:
        text += (f"\n\nThe hypernetwork there was trained for other weights ({checkpoint.trained_for}) than these "
                 "settings edit: change the settings back, or train one for these (*Start over*).")
    elif checkpoint.unfinished:
        text += (f"\n\nAn earlier training run stopped at step {checkpoint.steps_done} of {checkpoint.total_steps} "
                 f"({', '.join(checkpoint.languages)}): *Train* resumes it.")
    return text


def _train_form(lm: LoadedModel, config: MendConfig, checkpoint: MendCheckpoint) -> None:
    facts, sources = bundled_training_data()
    options = data_languages(facts)
    earlier = [code for code in checkpoint.languages if code in options]
    defaults = MendTrainConfig()
    with st.form("mend_train"):
        chosen = st.multiselect(
            "Training languages", options, default=earlier or options, format_func=language_label, key=LANGUAGES_KEY,
            help="The edits MEND learns from are written in these languages (default: every language of the edit "
                 "data, the bundled facts' dev split). They shape how MEND's edits carry over to other languages.")
        steps = st.number_input(
            "Training steps", min_value=1, step=50, key=STEPS_KEY, help=_field_help("steps"),
            value=checkpoint.total_steps if checkpoint.unfinished else defaults.steps)
        restart = False
        if checkpoint.steps_done or checkpoint.trained_for is not None:
            restart = st.checkbox(
                "Start over (discard the earlier training run)", key=RESTART_KEY,
                value=checkpoint.trained_for is not None,
                help="Otherwise training resumes the earlier run, which needs the same languages.")
        train = st.form_submit_button("Train MEND for this model", type="primary", icon=":material/model_training:")
    st.caption(f"Trained on {sources[0]}, every training step one edit; `memla train-mend --data/--import` adds "
               "your own files. The time left shows after the first steps.")
    if not train:
        return
    if not chosen:
        st.error("Choose at least one training language.")
        return
    try:
        train_config = MendTrainConfig(mend=config, steps=int(steps))
        languages = [code for code in options if code in chosen]  # the data's order, as `memla train-mend`
        MendTrainingJob(lm, facts, train_config, languages, sources, restart=restart).start()
    except ValueError as err:
        st.error(error_message(err, "Starting MEND training"))
        return
    st.rerun()


def _field_help(name: str) -> str:
    field = next(f for f in dataclasses.fields(MendTrainConfig) if f.name == name)
    return field.metadata.get("help", "")


@st.fragment(run_every=POLL_SECONDS)
def training_monitor(job: MendTrainingJob) -> None:
    """Progress and a Stop button; refreshes itself until the training ends."""
    status = job.status()
    if not status.active:
        _finished_notice(job, status)
        st.rerun()  # the whole page: MEND's state and the Apply button follow
    st.progress(status.fraction, text=progress_line(status))
    st.caption(f"Languages {', '.join(job.languages or [])}; saved in `{job.folder}` every "
               f"{job.config.save_every} steps and when stopped. While it trains the model is busy: edits, "
               "neurons and benchmark runs on it wait until training ends or is stopped.")
    if job.stopping:
        st.info("Stopping after the step in progress; the training state is saved and *Train* resumes it.")
    elif st.button("Stop training", key="mend_stop", icon=":material/stop:"):
        job.cancel()
        st.info("Stopping after the step in progress; the training state is saved and *Train* resumes it.")


def progress_line(status: TrainingStatus) -> str:
    """"Step 12 of 600 · loss 0.4321 · about 3 min 20 s left"."""
    if status.record is None:
        return "Preparing: writing the ordinary texts the locality loss uses …"
    parts = [f"Step {status.step} of {status.total}", f"loss {status.loss:.4f}"]
    eta = status.eta_s
    if eta is not None:
        parts.append(f"about {_duration(eta)} left")
    return " · ".join(parts)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def _finished_notice(job: MendTrainingJob, status: TrainingStatus) -> None:
    if status.state == "done":
        state.notify(f"MEND is trained for this model ({status.step} steps): MEND edits work now.", "success")
    elif status.state == "stopped":
        state.notify(f"MEND training stopped at step {status.step} of {status.total}; its state is saved, and "
                     "*Train MEND for this model* resumes it.")
