"""AppTest checks that the app says what it shows: what the unedited model knows, what a
comparison averages over, how many facts a cell holds. Tiny random Gemma-3 checkpoint."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from streamlit.testing.v1 import AppTest
from app_helpers import _no_errors, APP, FACT, open_app

from memla_core.data import load_bundled
from memla_core.knowledge import KnowledgeCache
from memla_core.models import LoadedModel, ModelSpec



@pytest.fixture
def loaded_app(tiny_checkpoints, monkeypatch) -> AppTest:
    at = open_app(monkeypatch, tiny_checkpoints["gemma3_text"])
    next(b for b in at.button if b.label == "Load model").click().run()
    _no_errors(at)
    return at


def _plant_knowledge(checkpoint: Path, known: set[tuple[str, str]]) -> None:
    """Verdicts for every bundled (fact, language), in the on-disk cache the app reads."""
    key = LoadedModel.key.fget(SimpleNamespace(spec=ModelSpec(str(checkpoint))))
    entries = {}
    for fact in load_bundled():
        for lang, block in fact.languages.items():
            e = block.edit
            hit = (fact.example_id, lang) in known
            entries[KnowledgeCache.key(lang, e.filled(), e.target_true, e.target_new)] = {
                "rank": 1 if hit else 7, "probability": 0.6 if hit else 0.01, "greedy_correct": hit,
                "top_token": e.target_true if hit else "the", "p_new": 0.001,
            }
    KnowledgeCache(SimpleNamespace(key=key)).put_many(entries)


def test_facts_page_marks_known_languages_and_filters_to_known_facts(loaded_app, tiny_checkpoints):
    _plant_knowledge(tiny_checkpoints["gemma3_text"], {(FACT, "en"), (FACT, "fr"), ("geo-capital-japan", "fr")})
    at = loaded_app
    at.switch_page("app_pages/facts.py").run()
    next(s for s in at.selectbox if s.label.startswith("Fact to work on")).select(FACT).run()
    _no_errors(at)
    row = at.dataframe[-1].value.loc["unedited model knows it?"]
    assert row["English (en)"].startswith("✓ known") and row["French (fr)"].startswith("✓ known")
    assert row["German (de)"].startswith("✗ unknown: says “the”") and "rank 7" in row["German (de)"]
    assert any("knows this fact in 2 of 12 shown languages" in c.value for c in at.caption)
    # No language picked: the table shows them all, and the caption counts them all.
    next(m for m in at.multiselect if m.label == "Languages").set_value([]).run()
    _no_errors(at)
    assert any("No language picked: all are shown." in c.value for c in at.caption)
    assert any("knows this fact in 2 of 12 shown languages" in c.value for c in at.caption)

    # The filter keeps facts known in the source language (English here): only FACT.
    next(c for c in at.checkbox if c.label.startswith("Only facts the model knows")).check().run()
    _no_errors(at)
    picker = next(s for s in at.selectbox if s.label.startswith("Fact to work on"))
    assert len(picker.options) == 1 and picker.options[0].startswith(FACT)
    assert picker.label.startswith(f"Fact to work on (1 of {len(load_bundled())} match")


@pytest.fixture
def app(tiny_checkpoints, monkeypatch) -> AppTest:
    return open_app(monkeypatch, tiny_checkpoints["gemma3_text"])


def test_benchmark_comparison_says_what_it_averages_and_over_how_many_facts(app):
    from memla_core.bench import results_dir
    from memla_core.bench.store import rows_frame, write_results

    base = {"model": "m", "seed": 0, "settings": "{}", "error": "", "seconds_edit": 1.0, "seconds_eval": 2.0,
            "seconds_neurons": 0.0, "source_lang": "en", "es_definition": "P(new)>P(true)"}
    rows = [{**base, "fact_id": fact, "method": method, "target_lang": target, "ES": es, "PS": es, "NS": 50.0, "QS": 40.0}
            for method, es in (("memla", 100.0), ("ft", 0.0)) for fact in ("f1", "f2") for target in ("en", "zh", "fr")]
    write_results(results_dir() / "coverage.csv", rows_frame(rows))
    app.switch_page("app_pages/benchmark.py").run()
    _no_errors(app)
    frames = [d.value for d in app.dataframe]
    ours = next(f for f in frames if "en-avg (2 of 11)" in f.columns)
    assert "en-avg" not in ours.columns  # the paper's 11-language average is not claimed
    counts = next(f for f in frames if "en-avg (2 of 11)" in f.columns and f.select_dtypes("number").eq(2).all().all())
    assert list(counts.columns)[:3] == ["en-en", "en-zh", "en-fr"]
    captions = " ".join(c.value for c in app.caption)
    assert "this run averages 2 target languages, the paper 11" in captions
    assert "fewer than 10 facts are grey" in captions
    assert "QS here scores the multi-hop questions" in captions


def test_edit_results_explain_themselves(loaded_app, tiny_checkpoints):
    _plant_knowledge(tiny_checkpoints["gemma3_text"], {(FACT, "en")})
    at = loaded_app
    at.switch_page("app_pages/facts.py").run()
    next(s for s in at.selectbox if s.label.startswith("Fact to work on")).select(FACT).run()
    at.switch_page("app_pages/edit.py").run()
    next(n for n in at.number_input if n.label == "IG steps m").set_value(2).run()
    next(n for n in at.number_input if n.label == "Max steps").set_value(2).run()
    next(m for m in at.multiselect if m.label.startswith("Evaluated in")).set_value(["en", "it"]).run()
    next(b for b in at.button if b.label == "Apply edit").click().run()
    _no_errors(at)
    comparison = next(df.value for df in at.dataframe if "answer after" in getattr(df.value, "columns", []))
    rows = comparison.set_index("target language")
    # The Italian targets are written next to the answers: "Lione", not "Lyon".
    assert rows.loc["it", "true answer"] == "Parigi" and rows.loc["it", "new answer"] == "Lione"
    assert rows.loc["en", "model knew it"].startswith("✓ known") and rows.loc["it", "model knew it"].startswith("✗ unknown")
    # One method has its per-language chart too (4 metric bars over en and it).
    names = [trace["name"] for chart in at.get("plotly_chart") for trace in __import__("json").loads(chart.proto.spec)["data"]]
    assert {"ES", "PS", "NS"} <= set(names)
    details = next(df.value for df in at.dataframe if "prompt kind" in getattr(df.value, "columns", []))
    assert {"target language", "expected answer", "P(new) before", "model's answer after"} <= set(details.columns)
    assert not details.astype(str).isin(["None", "nan"]).any().any()


def test_a_link_with_fact_and_source_restores_them_and_the_model_loads_by_itself(tiny_checkpoints, monkeypatch):
    monkeypatch.setenv("MEMLA_APP_MODEL", str(tiny_checkpoints["gemma3_text"]))
    monkeypatch.setenv("MEMLA_APP_AUTOLOAD", "1")  # as for the embedded default model
    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params["fact"] = FACT
    at.query_params["source"] = "fr"
    at.run()
    _no_errors(at)
    assert at.session_state["model_spec"] is not None  # no "Load model" click
    assert at.session_state["fact_id"] == FACT and at.session_state["source_language"] == "fr"
    at.switch_page("app_pages/edit.py").run()
    _no_errors(at)
    assert next(s for s in at.selectbox if s.label.startswith("Edit made in")).value == "fr"

    # Picking another fact writes it into the URL, so a reload or a shared link finds it.
    at.switch_page("app_pages/facts.py").run()
    next(s for s in at.selectbox if s.label.startswith("Fact to work on")).select("geo-capital-japan").run()
    _no_errors(at)
    assert at.query_params["fact"] == ["geo-capital-japan"] or at.query_params["fact"] == "geo-capital-japan"


def test_without_autoload_the_model_waits_for_setup(app):
    assert app.session_state["model_spec"] is None


def test_settings_mismatch_names_the_settings_and_resumes_with_the_files(loaded_app, tiny_models):
    import json as _json

    from memla_core.bench import BenchConfig, resolve_method, results_dir, speed_overrides
    from memla_core.bench.store import rows_frame, write_results

    at = loaded_app
    lm = tiny_models["gemma3_text"]
    form = BenchConfig(methods=("ike",), common_overrides=speed_overrides(ig_steps=2, edit_steps=3))
    settings = _json.loads(resolve_method("ike", lm, form).settings)
    settings["demonstrations"] = 1  # the file was computed with one demonstration, the form says 2
    rows = [{"fact_id": "geo-capital-france", "method": "ike", "source_lang": "en", "target_lang": t, "model": lm.key,
             "seed": 0, "settings": _json.dumps(settings, sort_keys=True), "error": "", "ES": 100.0, "PS": 100.0,
             "NS": 50.0} for t in ("en", "zh")]
    write_results(results_dir() / "mismatch.csv", rows_frame(rows))

    at.switch_page("app_pages/benchmark.py").run()
    ms = lambda label: next(w for w in at.multiselect if w.label == label)
    ms("Methods").set_value(["ike"])
    ms("Evaluated in (target languages)").set_value(["en", "zh"])
    next(n for n in at.number_input if n.label == "Number of facts (the first N)").set_value(2)
    next(n for n in at.number_input if n.label == "IG steps (knowledge neurons)").set_value(2)
    next(n for n in at.number_input if n.label == "Edit steps").set_value(3)
    next(t for t in at.text_input if t.label == "Results file").input("mismatch")
    next(b for b in at.button if b.label == "Start the benchmark").click().run()
    _no_errors(at)
    warning = " ".join(w.value for w in at.warning)
    assert "mismatch.csv was computed with other settings" in warning
    assert "IKE demonstrations: 1 in the file, 2 now" in warning
    assert at.session_state["bench_job"] is None  # nothing started behind the user's back

    next(b for b in at.button if b.label == "Resume with the file's settings").click().run()
    _no_errors(at)
    job = at.session_state["bench_job"]
    assert job is not None and job.config.out.name == "mismatch.csv"
    assert _json.loads(resolve_method("ike", lm, job.config).settings) == settings
    job.cancel()
    job.wait(120)
