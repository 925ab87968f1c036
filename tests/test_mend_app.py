"""MEND training from the Edit page (issue 15): with no hypernetwork for the loaded model the page
says so and offers "Train MEND for this model"; nothing trains on page load; a few training steps
on the tiny Gemma-3 checkpoint write the hypernetwork, after which MEND edits on the page; a run
stopped from the page resumes. Also the background job and its progress line on their own."""

from __future__ import annotations

import time

import pytest
from streamlit.testing.v1 import AppTest
from app_helpers import _by_label, _no_errors, FACT, open_app

from app_support.mend_panel import progress_line
from memla_core.data.schema import EditPrompt, Fact, FactInLanguage
from memla_core.editing.hparams import resolve
from memla_core.editing.mend import MendConfig
from memla_core.editing.mend_job import (
    MendTrainingJob,
    TrainingStatus,
    find_training,
    mend_checkpoint,
)
from memla_core.editing.mend_training import MendTrainConfig

METHODS_LABEL = "Methods (several = compared side by side on this fact)"
TRAIN = "Train MEND for this model"


@pytest.fixture
def app(tiny_checkpoints, monkeypatch) -> AppTest:
    at = open_app(monkeypatch, tiny_checkpoints["gemma3_text"])
    _by_label(at.button, "Load model").click().run()
    at.switch_page("app_pages/facts.py").run()
    next(s for s in at.selectbox if s.label.startswith("Fact to work on")).select(FACT).run()
    at.switch_page("app_pages/edit.py").run()
    _by_label(at.multiselect, METHODS_LABEL).set_value(["mend"]).run()
    _no_errors(at)
    return at


def _folder(tiny_models):
    return mend_checkpoint(tiny_models["gemma3_text"]).folder


def _warnings(at: AppTest) -> str:
    return " ".join(w.value for w in at.warning)


def _train(at: AppTest, steps: int, languages: list[str] | None = None) -> None:
    if languages is not None:
        _by_label(at.multiselect, "Training languages").set_value(languages)
    _by_label(at.number_input, "Training steps").set_value(steps)
    _by_label(at.button, TRAIN).click().run()
    _no_errors(at)


def test_missing_hypernetwork_is_said_and_nothing_trains_on_page_load(app, tiny_models):
    assert "MEND cannot edit yet" in _warnings(app)
    assert _by_label(app.button, TRAIN)
    assert _by_label(app.button, "Apply edit").disabled
    # The training defaults: every language of the bundled dev split, the config's steps.
    assert {"en", "zh", "fr"} <= set(_by_label(app.multiselect, "Training languages").value)
    assert _by_label(app.number_input, "Training steps").value == MendTrainConfig().steps
    app.run()  # drawn again: still nothing started
    folder = _folder(tiny_models)
    assert find_training(folder) is None and not folder.exists()
    # Without MEND among the methods, the section is not drawn at all.
    _by_label(app.multiselect, METHODS_LABEL).set_value(["ike"]).run()
    assert "MEND" not in _warnings(app) and not [b for b in app.button if b.label == TRAIN]
    assert not _by_label(app.button, "Apply edit").disabled


def test_training_from_the_page_writes_the_hypernetwork_and_mend_edits(app, tiny_models):
    _train(app, steps=3, languages=["en"])
    job = find_training(_folder(tiny_models))
    assert job is not None and job.languages == ["en"] and job.config.steps == 3
    assert job.wait(120).state == "done", job.error
    app.run()
    _no_errors(app)
    assert "MEND cannot edit yet" not in _warnings(app)
    assert not [b for b in app.button if b.label == TRAIN]
    assert any("was trained on en (3 steps)" in c.value for c in app.caption)
    assert mend_checkpoint(tiny_models["gemma3_text"]).trained
    # MEND edits on the page now.
    _by_label(app.multiselect, "Evaluated in (target languages)").set_value(["en"]).run()
    _by_label(app.button, "Apply edit").click().run()
    _no_errors(app)
    outcome = app.session_state["edits"]["mend"]
    assert outcome.edit.weight_deltas and outcome.edit.details["trained_languages"] == ["en"]


def test_training_stopped_from_the_page_resumes(app, tiny_models):
    _train(app, steps=100_000, languages=["en"])  # far more than one page run: still going below
    job = find_training(_folder(tiny_models))
    try:
        deadline = time.time() + 60
        while job.status().step < 1 and time.time() < deadline:
            time.sleep(0.2)
        app.run()
        _no_errors(app)
        assert any(p.proto.text.startswith("Step ") and "loss" in p.proto.text for p in app.get("progress"))
        _by_label(app.button, "Stop training").click().run()
    finally:
        job.cancel()
    assert job.wait(120).state == "stopped", job.error
    stopped = job.status().step
    app.run()
    _no_errors(app)
    assert f"stopped at step {stopped} of 100000" in _warnings(app)
    assert _by_label(app.number_input, "Training steps").value == 100_000
    _train(app, steps=stopped + 2)  # the earlier run's languages are the default: it resumes
    again = find_training(_folder(tiny_models))
    assert again is not job and again.wait(120).state == "done", again.error
    assert again.status().first_step[1] == stopped + 1  # continued, not started over
    assert again.result.steps_done == stopped + 2


def _fact() -> Fact:
    block = FactInLanguage(EditPrompt("France", "The capital city of {} is", "Lyon", "Paris"),
                           paraphrase_prompts=("The capital of France is",))
    return Fact("test-france", "capital", {"en": block}, relation="capital")


def test_job_stops_with_its_state_saved_and_a_new_job_resumes(tiny_models, tmp_path):
    lm = tiny_models["llama"]
    config = MendTrainConfig(mend=MendConfig(checkpoint=str(tmp_path / "mend")), rank=8, steps=4,
                             locality_texts=2, locality_tokens=4, save_every=100)
    job = MendTrainingJob(lm, [_fact()], config)
    job.cancel()  # before the first step: it stops after it
    job.start()
    assert job.wait(120).state == "stopped" and job.status().step == 1
    found = mend_checkpoint(lm, config.mend)
    assert found.unfinished and (found.steps_done, found.total_steps, found.languages) == (1, 4, ("en",))
    resumed = MendTrainingJob(lm, [_fact()], config).start()
    assert resumed.wait(120).state == "done" and resumed.status().first_step[1] == 2
    assert mend_checkpoint(lm, config.mend).trained and find_training(found.folder) is resumed
    other = mend_checkpoint(lm, MendConfig(checkpoint=config.mend.checkpoint, modules=("down_proj",)))
    assert not other.trained and other.trained_for == resolve(config.mend, "mend", lm).architecture()


def test_one_training_job_per_folder(tiny_models, tmp_path):
    lm = tiny_models["llama"]
    config = MendTrainConfig(mend=MendConfig(checkpoint=str(tmp_path / "mend")), rank=8, steps=10_000,
                             locality_texts=2, locality_tokens=4, save_every=10_000)
    first = MendTrainingJob(lm, [_fact()], config).start()
    try:
        with pytest.raises(ValueError, match="already being trained"):
            MendTrainingJob(lm, [_fact()], config).start()
    finally:
        first.cancel()
    assert first.wait(120).state == "stopped"


def test_progress_line_says_step_loss_and_time_left():
    assert progress_line(TrainingStatus("running", total=600, started=0.0)).startswith("Preparing")
    one = TrainingStatus("running", step=1, total=600, record={"loss": 1.5}, started=0.0, first_step=(4.0, 1),
                         last_step_time=4.0)
    assert one.eta_s == pytest.approx(599 * 4.0)
    later = TrainingStatus("running", step=11, total=600, record={"loss": 0.25}, started=0.0, first_step=(4.0, 1),
                           last_step_time=24.0)
    assert later.eta_s == pytest.approx(589 * 2.0)
    assert progress_line(later) == "Step 11 of 600 · loss 0.2500 · about 19 min 38 s left"
