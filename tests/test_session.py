"""One shared model, several sessions: an edit never leaks into another session's answers."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from memla_core.editing import Edit, EditRequest, MemlaConfig
from memla_core.neurons import NeuronConfig
from memla_core.scoring import encode_prompt
from memla_core.session import (
    CancelToken,
    Cancelled,
    compute_edit,
    compute_neurons,
    edited,
    evaluate_fact,
    generate_text,
)

from conftest import changed_since, snapshot

PROMPT = "The capital of France is"


def _last_logits(lm, ids):
    with torch.no_grad():
        return lm.model(input_ids=torch.tensor([ids])).logits[0, -1].clone()


def _big_edit(lm) -> Edit:
    name = f"{lm.adapter.down_proj_name(lm.num_layers - 1)}.weight"
    weight = dict(lm.model.named_parameters())[name]
    delta = torch.randn(weight.shape, generator=torch.Generator().manual_seed(0)) * 5
    return Edit(method="test", fact_id="f", source_language="en", weight_deltas={name: delta})


@pytest.fixture
def lm(tiny_models):
    return tiny_models["llama"]


def test_a_waiting_session_runs_only_after_the_edit_is_reverted(lm):
    ids = encode_prompt(lm, PROMPT)
    baseline = _last_logits(lm, ids)
    edit = _big_edit(lm)
    with edit.applied(lm):
        edited_logits = _last_logits(lm, ids)
    assert not torch.allclose(baseline, edited_logits)

    a_inside, b_waiting = threading.Event(), threading.Event()
    order, seen = [], {}

    def session_a():
        with edited(lm, edit):
            a_inside.set()
            b_waiting.wait(5)
            time.sleep(0.05)  # B is now blocked on the lock, with the weights edited
            seen["a"] = _last_logits(lm, ids)
            order.append("a done")

    def session_b():
        a_inside.wait(5)
        b_waiting.set()
        with edited(lm, None):
            order.append("b start")
            seen["b"] = _last_logits(lm, ids)

    threads = [threading.Thread(target=session_a), threading.Thread(target=session_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert order == ["a done", "b start"]
    assert torch.equal(seen["a"], edited_logits)
    assert torch.equal(seen["b"], baseline)


def test_interleaved_sessions_always_see_their_own_model(lm):
    ids = encode_prompt(lm, PROMPT)
    before = snapshot(lm)
    baseline = _last_logits(lm, ids)
    edit = _big_edit(lm)
    with edit.applied(lm):
        edited_logits = _last_logits(lm, ids)
        edited_text = generate_text(lm, PROMPT, 6)
    plain_text = generate_text(lm, PROMPT, 6)
    problems: list[str] = []

    def edited_session():
        for _ in range(15):
            with edited(lm, edit):
                time.sleep(0.002)
                if not torch.equal(_last_logits(lm, ids), edited_logits):
                    problems.append("edited session saw other weights")
            if generate_text(lm, PROMPT, 6, edit) != edited_text:
                problems.append("edited session's text changed")

    def plain_session():
        for _ in range(15):
            with edited(lm, None):
                if not torch.equal(_last_logits(lm, ids), baseline):
                    problems.append("unedited session saw the other session's edit")
            if generate_text(lm, PROMPT, 6) != plain_text:
                problems.append("unedited session's text changed")
            time.sleep(0.001)

    threads = [threading.Thread(target=edited_session), threading.Thread(target=plain_session)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert problems == []
    assert not changed_since(lm, before)


def test_evaluate_fact_scores_the_edit_only_inside(lm, bundled):
    fact = bundled.get("geo-capital-france")
    before = snapshot(lm)
    edit = _big_edit(lm)
    plain = evaluate_fact(lm, fact, ["en", "zh"], source_language="en")
    after = evaluate_fact(lm, fact, ["en", "zh"], edit=edit)
    assert list(after.summary["target_lang"]) == ["en", "zh"]
    assert (plain.summary["p_new"] != after.summary["p_new"]).all()
    assert not changed_since(lm, before)
    again = evaluate_fact(lm, fact, ["en", "zh"], source_language="en")
    assert plain.summary["p_new"].tolist() == again.summary["p_new"].tolist()


def test_cancelled_neuron_search_stops_before_any_work(lm, bundled):
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        compute_neurons(lm, bundled.get("geo-capital-france"), "en", NeuronConfig(steps=2), cancel=token)


def test_cancelled_edit_leaves_the_model_as_it_was(lm, bundled):
    fact = bundled.get("geo-capital-france")
    before = snapshot(lm)
    modules = {name for name, _ in lm.model.named_modules()}
    token = CancelToken()
    steps = []

    def on_step(record):
        steps.append(record["step"])
        if record["step"] == 2:
            token.cancel()

    config = MemlaConfig(lr=0.05, max_steps=20, neurons=NeuronConfig(steps=2, threshold=0.1))
    with pytest.raises(Cancelled):
        compute_edit(lm, EditRequest(fact, "en"), "memla", config, on_step=on_step, cancel=token)
    assert steps == [0, 1, 2]
    assert not changed_since(lm, before)
    assert {name for name, _ in lm.model.named_modules()} == modules  # no LoRA layer left behind


def test_compute_edit_does_not_change_the_model(lm, bundled):
    fact = bundled.get("geo-capital-france")
    before = snapshot(lm)
    config = MemlaConfig(lr=0.05, max_steps=3, neurons=NeuronConfig(steps=2, threshold=0.1))
    edit = compute_edit(lm, EditRequest(fact, "en"), "memla", config)
    assert edit.method == "memla" and edit.weight_deltas
    assert not changed_since(lm, before)


def test_evaluate_fact_scores_languages_in_passes_with_progress(lm, bundled):
    from memla_core.evaluation import evaluate
    from memla_core.session import LANGUAGES_PER_PASS

    fact = bundled.get("geo-capital-france")
    languages = list(fact.language_codes)[: LANGUAGES_PER_PASS + 2]  # two passes
    seen: list[tuple[int, int, str]] = []
    report = evaluate_fact(lm, fact, languages, source_language="en", progress=lambda *a: seen.append(a))
    assert [s[0] for s in seen] == [0, LANGUAGES_PER_PASS, len(languages)]
    assert seen[0][2] == ", ".join(languages[:LANGUAGES_PER_PASS])
    assert list(report.summary["target_lang"]) == languages
    for lang in languages:  # the same scores as each language alone
        alone = evaluate(lm, fact, [lang], source_language="en").summary.iloc[0]
        row = report.summary.set_index("target_lang").loc[lang]
        assert row["p_new"] == pytest.approx(alone["p_new"], rel=1e-4)
        assert row["NS"] == alone["NS"] and row["answer"] == alone["answer"]
