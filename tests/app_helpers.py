"""Helpers shared by the AppTest test files: the app's path, starting it, widget lookups and the
Benchmark page's form (the ``app`` fixture itself is in ``conftest``)."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parent.parent / "app.py")
FACT = "geo-capital-france"


def _by_label(widgets, label: str):
    found = [w for w in widgets if w.label == label]
    assert found, f"no widget labelled {label!r}; have {[w.label for w in widgets]}"
    return found[0]


def _no_errors(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def open_app(monkeypatch, checkpoint) -> AppTest:
    """The app with its Setup page pointed at ``checkpoint`` (``MEMLA_APP_MODEL``), after its first run."""
    monkeypatch.setenv("MEMLA_APP_MODEL", str(checkpoint))
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    return at


def fill_bench_form(at: AppTest, name: str, facts: int, methods: list[str]) -> None:
    """Start a small benchmark from the Benchmark page (en and zh, 2 IG steps, 3 edit steps)."""
    _by_label(at.multiselect, "Methods").set_value(methods)
    _by_label(at.multiselect, "Evaluated in (target languages)").set_value(["en", "zh"])
    _by_label(at.number_input, "Number of facts (the first N)").set_value(facts)
    _by_label(at.number_input, "IG steps (knowledge neurons)").set_value(2)
    _by_label(at.number_input, "Edit steps").set_value(3)
    _by_label(at.text_input, "Results file").input(name)
    _by_label(at.button, "Start the benchmark").click().run()
    _no_errors(at)
