"""The Edit page's edit stack and general-ability check with AppTest, on the tiny Gemma-3 checkpoint:
two edits stacked (of two facts), the table of which still hold, the probe before and after,
pop, revert all, and the shared model's weights bit for bit as loaded."""

from __future__ import annotations

from app_helpers import FACT, _by_label, _no_errors
from streamlit.testing.v1 import AppTest

from app_support.resources import get_model
from conftest import changed_since, snapshot

SECOND = "geo-capital-japan"


def _pick(at: AppTest, fact_id: str) -> None:
    at.switch_page("app_pages/facts.py").run()
    next(s for s in at.selectbox if s.label.startswith("Fact to work on")).select(fact_id).run()
    at.switch_page("app_pages/edit.py").run()
    _no_errors(at)


def _apply_and_stack(at: AppTest) -> None:
    _by_label(at.button, "Apply edit").click().run()
    _no_errors(at)
    _by_label(at.button, "Add to stack").click().run()
    _no_errors(at)
    assert at.session_state["edits"] == {}  # the edit moved into the stack


def _stack_table(at: AppTest):
    return next(df.value for df in at.dataframe if "mean ES" in getattr(df.value, "columns", []))


def test_stack_two_edits_see_them_hold_pop_and_revert_all(app):
    _by_label(app.button, "Load model").click().run()
    _no_errors(app)
    lm = get_model(app.session_state["model_spec"])
    loaded = snapshot(lm)

    _pick(app, FACT)
    _by_label(app.multiselect, "Methods (several = compared side by side on this fact)").set_value(["ft"]).run()
    _by_label(app.multiselect, "Evaluated in (target languages)").set_value(["en", "zh"]).run()
    _by_label(app.number_input, "Max steps").set_value(3).run()
    _apply_and_stack(app)
    assert [entry.fact.example_id for entry in app.session_state["edit_stack"]] == [FACT]
    assert list(_stack_table(app)["fact"]) == [FACT]
    assert not changed_since(lm, loaded)  # the stack lives in the session, not in the shared weights

    _pick(app, SECOND)
    assert any("on top of your 1 stacked edit(s)" in c.value for c in app.caption)
    _apply_and_stack(app)
    grid = _stack_table(app)
    assert list(grid["fact"]) == [FACT, SECOND] and list(grid["method"]) == ["FT-L", "FT-L"]
    assert {"en", "zh"} <= set(grid.columns)
    assert "Edit stack:** 2 edit(s)" in " ".join(m.value for m in app.sidebar.markdown)

    _by_label(app.button, "Measure general ability").click().run()
    _no_errors(app)
    ability = next(df.value for df in app.dataframe if "drift (KL)" in getattr(df.value, "columns", []))
    assert list(ability["model"]) == ["unedited", "your 2 stacked edit(s)"]
    assert {"physical en %", "physical mean %", "nli en %", "nli mean %"} <= set(ability.columns)
    assert ability["drift (KL)"].iloc[0] == 0

    _by_label(app.button, "Pop the newest edit").click().run()
    _no_errors(app)
    assert list(_stack_table(app)["fact"]) == [FACT]

    _by_label(app.button, "Revert all stacked edits").click().run()
    _no_errors(app)
    assert len(app.session_state["edit_stack"]) == 0
    assert not any(b.label == "Pop the newest edit" for b in app.button)
    assert not changed_since(lm, loaded)
