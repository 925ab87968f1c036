"""Links and reloads (issue 13): the neuron and edit settings live in the URL's query parameters,
so a reload (a new AppTest on the same URL) or a shared link brings them back; a link's bad
values are left out with a warning, never a crash. Tiny random Gemma-3 checkpoint."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest
from app_helpers import _by_label, _no_errors, APP, FACT

from app_support import state
from app_support.url_state import parse_settings, settings_params
from memla_core.editing import presets
from memla_core.editing.memla import MemlaConfig
from memla_core.editing.registry import config_field

METHODS_LABEL = "Methods (several = compared side by side on this fact)"


def _open(link: dict[str, str]) -> AppTest:
    """A new session on a URL with these query parameters: a reload, or a shared link."""
    at = AppTest.from_file(APP, default_timeout=180)
    for key, value in link.items():
        at.query_params[key] = value
    at.run()
    return at


def _url(at: AppTest) -> dict[str, str]:
    """The query parameters the app wrote, as a browser's address bar would hold them."""
    return {key: value[-1] if isinstance(value, list) else value for key, value in at.query_params.items()}


@pytest.fixture(autouse=True)
def _tiny_model_loads_by_itself(tiny_checkpoints, monkeypatch):
    monkeypatch.setenv("MEMLA_APP_MODEL", str(tiny_checkpoints["gemma3_text"]))
    monkeypatch.setenv("MEMLA_APP_AUTOLOAD", "1")  # as for the embedded default model


def test_settings_round_trip_through_query_parameters():
    session = {state.IG_STEPS: 7, state.IG_BASELINE: "zero", state.IG_THRESHOLD: 0.15000000000000002,
               state.IG_LANGUAGES: ["en", "de"], state.METHODS_CHOSEN: ["memla", "ike"]}
    params = settings_params(session)
    assert params == {"ig_steps": "7", "ig_baseline": "zero", "ig_threshold": "0.15", "ig_langs": "en,de",
                      "methods": "memla,ike"}
    values, chosen, problems = parse_settings({**params, "preset": "memla:paper"}, {"en", "de", "zh"})
    assert values == {**session, state.IG_THRESHOLD: 0.15} and chosen == {"memla": "paper"} and problems == []
    # A bare preset applies to every method's form.
    assert set(parse_settings({"preset": "paper"}, set())[1].values()) == {"paper"}


def test_a_link_restores_neuron_and_edit_settings_and_a_reload_keeps_changes(tiny_checkpoints, monkeypatch):
    from transformers import AutoConfig

    kind = AutoConfig.from_pretrained(tiny_checkpoints["gemma3_text"]).model_type
    monkeypatch.setitem(presets.TUNED, kind, {"memla": {"lr": 0.02, "neurons.threshold": 0.1}})
    lr_label = config_field(MemlaConfig, "lr").label
    link = {"fact": FACT, "source": "fr", "ig_steps": "7", "ig_baseline": "zero", "ig_threshold": "0.15",
            "ig_langs": "en,de", "methods": "memla,ike", "preset": "memla:paper"}
    at = _open(link)
    _no_errors(at)
    at.switch_page("app_pages/neurons.py").run()
    _no_errors(at)
    assert _by_label(at.number_input, "IG steps m").value == 7
    assert _by_label(at.selectbox, "IG baseline").value == "zero"
    assert _by_label(at.slider, "Threshold").value == pytest.approx(0.15)
    assert _by_label(at.multiselect, "Languages whose neuron sets are intersected (language-independent neurons)"
                     ).value == ["en", "de"]
    at.switch_page("app_pages/edit.py").run()
    _no_errors(at)
    assert _by_label(at.multiselect, METHODS_LABEL).value == ["memla", "ike"]
    assert _by_label(at.radio, "Start from").value == "paper"
    assert _by_label(at.number_input, lr_label).value == pytest.approx(MemlaConfig().lr)
    assert _by_label(at.slider, "Threshold").value == pytest.approx(0.15)  # the link's, not a preset's
    assert _url(at) == link

    # Changes on either page go into the URL; a reload of that URL brings them back.
    _by_label(at.radio, "Start from").set_value("tuned").run()
    _by_label(at.slider, "Threshold").set_value(0.25).run()  # after the preset, which set it to 0.1
    _by_label(at.multiselect, METHODS_LABEL).set_value(["memla", "ft"]).run()
    at.switch_page("app_pages/neurons.py").run()
    _by_label(at.number_input, "IG steps m").set_value(9).run()
    _no_errors(at)
    url = _url(at)
    assert {k: url[k] for k in ("ig_steps", "ig_threshold", "methods", "preset")} == {
        "ig_steps": "9", "ig_threshold": "0.25", "methods": "memla,ft", "preset": "memla:tuned"}

    reloaded = _open(url)
    _no_errors(reloaded)
    reloaded.switch_page("app_pages/edit.py").run()
    _no_errors(reloaded)
    assert reloaded.session_state["source_language"] == "fr"
    assert _by_label(reloaded.multiselect, METHODS_LABEL).value == ["memla", "ft"]
    assert _by_label(reloaded.radio, "Start from").value == "tuned"
    assert _by_label(reloaded.number_input, lr_label).value == pytest.approx(0.02)
    assert _by_label(reloaded.slider, "Threshold").value == pytest.approx(0.25)
    assert _by_label(reloaded.number_input, "IG steps m").value == 9
    assert _url(reloaded) == url


def test_a_reload_shows_the_neurons_found_before_from_the_disk_cache():
    link = {"fact": FACT, "source": "en", "ig_steps": "2", "ig_langs": "en,zh"}
    at = _open(link)
    at.switch_page("app_pages/neurons.py").run()
    _no_errors(at)
    assert not at.metric and "Press **Find neurons**" in " ".join(i.value for i in at.info)
    _by_label(at.button, "Find neurons").click().run()
    _no_errors(at)
    found = {m.label: m.value for m in at.metric}

    reloaded = _open(_url(at))  # no button pressed: every prompt is cached, so they are shown
    reloaded.switch_page("app_pages/neurons.py").run()
    _no_errors(reloaded)
    assert {m.label: m.value for m in reloaded.metric} == found
    assert any("Taken from the on-disk cache" in c.value for c in reloaded.caption)
    assert reloaded.session_state["neurons"].config.steps == 2
    # Other settings, not searched before: nothing is computed until the button is pressed.
    _by_label(reloaded.number_input, "IG steps m").set_value(3).run()
    _no_errors(reloaded)
    assert any("found with other settings" in w.value for w in reloaded.warning)


def test_bad_values_in_a_link_are_left_out_with_a_warning():
    at = _open({"fact": FACT, "source": "xx", "ig_steps": "0", "ig_baseline": "mean", "ig_threshold": "abc",
                "ig_langs": "en,klingon", "methods": "memla,nope", "preset": "memla:best"})
    _no_errors(at)
    warning = " ".join(w.value for w in at.warning)
    for part in ("source='xx'", "ig_steps='0'", "ig_baseline='mean'", "ig_threshold='abc'", "'klingon'", "'nope'",
                 "'memla:best'"):
        assert part in warning, warning
    assert at.session_state["fact_id"] == FACT  # the good parts apply
    assert at.session_state["ig_steps"] == 20 and at.session_state["ig_baseline"] == "eos"
    assert at.session_state["ig_threshold"] == pytest.approx(0.3)
    assert at.session_state["ig_languages"] == ["en"] and at.session_state["methods_chosen"] == ["memla"]
    at.switch_page("app_pages/edit.py").run()
    _no_errors(at)
    assert _url(at)["ig_steps"] == "20" and _url(at)["methods"] == "memla"  # the URL now says what applies
    # A link naming only unknown methods keeps the default choice; its other settings apply without a fact.
    other = _open({"methods": "nope", "ig_threshold": "0.5"})
    _no_errors(other)
    assert other.session_state["methods_chosen"] == ["memla"] and other.session_state["ig_threshold"] == 0.5


def _enclosing_weights(at: AppTest, label: str) -> list[float]:
    """Width shares of the columns holding the selectbox ``label`` (empty: on its own row)."""
    return [col.weight for col in at.columns if any(box.label == label for box in col.selectbox)]


def test_language_boxes_have_room_for_the_language_names():
    at = _open({"fact": FACT, "source": "ko"})
    for page in ("app_pages/neurons.py", "app_pages/edit.py"):
        at.switch_page(page).run()
        _no_errors(at)
        box = _by_label(at.selectbox, "Edit made in (source language)")
        assert box.value == "ko" and box.format_func("ko") == "Korean (ko)"
        assert _enclosing_weights(at, box.label) == []  # never squeezed into a column ("Ko…")


def test_ig_steps_changed_after_a_link_survive_the_first_edit_form(tiny_checkpoints, monkeypatch):
    """A reload writes every IG setting into the link; the first draw of a form with a tuned preset
    sets the IG fields the preset names and keeps the others as the user has chosen them on the
    Neurons page since, not the link's stale values."""
    from transformers import AutoConfig

    kind = AutoConfig.from_pretrained(tiny_checkpoints["gemma3_text"]).model_type
    monkeypatch.setitem(presets.TUNED, kind, {"memla": {"stop_p_new": 0.99, "neurons.threshold": 0.2}})
    at = _open({"fact": FACT, "source": "en", "ig_steps": "20", "ig_threshold": "0.3", "methods": "memla"})
    at.switch_page("app_pages/neurons.py").run()
    _by_label(at.number_input, "IG steps m").set_value(4).run()
    at.switch_page("app_pages/edit.py").run()
    _no_errors(at)
    assert _by_label(at.radio, "Start from").value == "tuned"
    assert _by_label(at.number_input, "IG steps m").value == 4
    assert _by_label(at.slider, "Threshold").value == pytest.approx(0.2)  # the preset's, as its caption says
    assert _url(at)["ig_steps"] == "4" and _url(at)["ig_threshold"] == "0.2"
