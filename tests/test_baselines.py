"""FT-L, ROME, MEMIT, PMET and IKE on the tiny models of every architecture.

On a random 2-layer model, a change at the subject's token reaches later positions only through
one layer of near-uniform attention, far too weakly to move the answer. The requests here
therefore end with the subject ("The capital city of {}"), so the subject's last token is the
position that predicts the answer, as it must be for the edit to be testable at all. The test
configs (not the defaults) use a loose clamp, no KL/decay and few samples, to stay fast.
"""

from __future__ import annotations

import math

import pytest
import torch

from memla_core.data.schema import EditPrompt, Fact, FactInLanguage
from memla_core.editing import (
    METHODS,
    EditDivergedError,
    EditRequest,
    FTConfig,
    FTEditor,
    IkeConfig,
    IkeEditor,
    MemitConfig,
    MemitEditor,
    PmetConfig,
    PmetEditor,
    RomeConfig,
    RomeEditor,
    StatsConfig,
    default_config,
)
from memla_core.editing import hparams
from memla_core.editing.layer_stats import LayerStats, regularise
from memla_core.editing.locate import build_rows, encode_at, subject_end
from memla_core.evaluation import evaluate
from memla_core.scoring import answer_logprobs, encode_completion

from conftest import changed_since, snapshot

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.one_thread


STATS = StatsConfig(samples=8, max_new_tokens=4, batch_size=8)
FAST = dict(v_steps=15, clamp_norm_factor=100.0, kl_factor=0.0, v_weight_decay=0.0, context_templates=1, stats=STATS)

EDITORS = {
    "ft": lambda: FTEditor(FTConfig(lr=1e-2, norm_constraint=0.05, steps=30)),
    "rome": lambda: RomeEditor(RomeConfig(**FAST)),
    "memit": lambda: MemitEditor(MemitConfig(layers=(0, 1), mom2_update_weight=1.0, **FAST)),
    "pmet": lambda: PmetEditor(PmetConfig(mom2_update_weight=1.0, **FAST)),
}


def subject_last_fact() -> Fact:
    block = FactInLanguage(
        EditPrompt("France", "The capital city of {}", "Lyon", "Paris"),
        paraphrase_prompts=("The capital of France",),
        neighborhood_prompts=("The capital of Italy is",),
        neighborhood_answers=("Rome",),
    )
    return Fact("test-subject-last", "capital", {"en": block})


def probabilities(lm, request: EditRequest, context: str = "") -> tuple[float, float]:
    e = request.prompt
    items = [
        encode_completion(lm, context + e.filled(), e.target_new, "en"),
        encode_completion(lm, context + e.filled(), e.target_true, "en"),
    ]
    new, true = (float(lp.sum().exp()) for lp in answer_logprobs(lm, items))
    return new, true


def assert_same(lm, before: dict[str, torch.Tensor]) -> None:
    changed = changed_since(lm, before)
    assert not changed, f"weights changed: {changed[:3]}"
    assert not any(p.requires_grad for p in lm.model.parameters())


@pytest.mark.parametrize("method", sorted(EDITORS))
def test_edit_prefers_new_and_reverts_exactly(tiny_lm, method):
    request = EditRequest(subject_last_fact(), "en")
    before = snapshot(tiny_lm)
    steps = []
    edit = EDITORS[method]().compute(tiny_lm, request, on_step=steps.append)
    assert_same(tiny_lm, before)  # compute itself leaves the model as it was
    assert steps and {"step", "loss", "p_new", "p_true"} <= steps[0].keys()
    assert edit.weight_deltas and edit.method == method and edit.seconds > 0
    p_new_before, p_true_before = probabilities(tiny_lm, request)
    handle = edit.apply(tiny_lm)
    p_new, p_true = probabilities(tiny_lm, request)
    handle.revert()
    assert p_new > p_true, f"{method}: P(new)={p_new:.3g} ≤ P(true)={p_true:.3g} (before {p_new_before:.3g} / {p_true_before:.3g})"
    assert_same(tiny_lm, before)


@pytest.mark.parametrize("method", ["rome", "memit", "pmet"])
def test_value_optimisation_traces_p_true(tiny_models, method):
    lm = tiny_models["llama"]
    request = EditRequest(subject_last_fact(), "en")
    p_new, p_true = probabilities(lm, request)
    trace = EDITORS[method]().compute(lm, request).trace
    assert len(trace) > 1 and all(math.isfinite(r["p_true"]) for r in trace)
    # Step 0 runs with δ = 0: the unedited model's probabilities, as the scorer computes them.
    assert trace[0]["p_true"] == pytest.approx(p_true, rel=1e-3)
    assert trace[0]["p_new"] == pytest.approx(p_new, rel=1e-3)
    assert trace[-1]["p_true"] != trace[0]["p_true"]


def test_ft_respects_linf_bound(tiny_models):
    lm = tiny_models["llama"]
    edit = FTEditor(FTConfig(lr=1e-2, norm_constraint=1e-3, steps=5)).compute(lm, EditRequest(subject_last_fact(), "en"))
    (delta,) = edit.weight_deltas.values()
    assert 0 < float(delta.abs().max()) <= 1e-3 + 1e-7


@pytest.mark.parametrize("arch", ["gpt2", "gemma3_text"])
def test_memit_and_pmet_write_every_layer_in_their_own_layout(tiny_models, arch):
    """GPT-2 stores Conv1D weights [in, out]; Gemma normalises the MLP output (Newton solve)."""
    lm = tiny_models[arch]
    request = EditRequest(subject_last_fact(), "en")
    memit = MemitEditor(MemitConfig(layers=(0, 1), mom2_update_weight=1.0, **FAST)).compute(lm, request)
    assert sorted(memit.weight_deltas) == [f"{lm.adapter.down_proj_name(l)}.weight" for l in (0, 1)]
    pmet = PmetEditor(PmetConfig(layers=(0, 1), mom2_update_weight=1.0, rewrite_attention=True, **FAST)).compute(lm, request)
    expected = {f"{lm.adapter.down_proj_name(l)}.weight" for l in (0, 1)} | {f"{lm.adapter.attn_out_name(l)}.weight" for l in (0, 1)}
    assert set(pmet.weight_deltas) == expected
    params = dict(lm.model.named_parameters())
    for edit in (memit, pmet):
        assert all(d.shape == params[n].shape for n, d in edit.weight_deltas.items())
        before = snapshot(lm)
        with edit.applied(lm):
            p_new, p_true = probabilities(lm, request)
        assert p_new > p_true
        assert_same(lm, before)


def test_ike_changes_no_weights_and_evaluate_uses_its_context(tiny_lm, bundled):
    fact = bundled.get("geo-capital-france")
    before = snapshot(tiny_lm)
    # Two demonstrations: the tiny GPT-2 and OPT have 256 positions.
    edit = IkeEditor(IkeConfig(demonstrations=2)).compute(tiny_lm, EditRequest(fact, "en"))
    assert not edit.weight_deltas
    assert edit.context.endswith("New fact: The capital of France is Lyon.\nPrompt: ")
    assert edit.context.count("New fact:") == 3 and fact.example_id not in edit.details["demonstrations_from"]
    plain = evaluate(tiny_lm, fact, ["en", "fr"])
    with edit.applied(tiny_lm):
        in_context = evaluate(tiny_lm, fact, ["en", "fr"], edit=edit)
    assert_same(tiny_lm, before)
    assert not plain.summary.p_new.equals(in_context.summary.p_new)  # the context reached the model


def test_ike_without_other_facts_uses_only_a_copy_of_the_request(bundled):
    fact = bundled.get("geo-capital-france")
    edit = IkeEditor(pool=[fact]).compute(None, EditRequest(fact, "de"))
    assert edit.details["demonstrations_from"] == [fact.example_id]
    for prompt in fact.in_language("de").paraphrase_prompts + fact.in_language("de").neighborhood_prompts:
        assert prompt not in edit.context  # evaluation prompts never appear with answers
    assert edit.context.count("Die Hauptstadt von Frankreich ist Lyon.") == 2


@pytest.mark.parametrize(
    "make",
    [
        lambda: FTEditor(FTConfig(lr=math.inf, norm_constraint=math.inf, steps=3)),
        lambda: RomeEditor(RomeConfig(**{**FAST, "v_lr": math.inf, "v_steps": 3})),
        lambda: MemitEditor(MemitConfig(layers=(0, 1), mom2_update_weight=1.0, **{**FAST, "v_lr": math.inf, "v_steps": 3})),
        lambda: PmetEditor(PmetConfig(mom2_update_weight=1.0, **{**FAST, "v_lr": math.inf, "v_steps": 3})),
    ],
    ids=["ft", "rome", "memit", "pmet"],
)
def test_diverging_edit_raises_and_leaves_weights(tiny_models, make):
    lm = tiny_models["gemma3_text"]
    before = snapshot(lm)
    with pytest.raises(EditDivergedError) as info:
        make().compute(lm, EditRequest(subject_last_fact(), "en"))
    assert info.value.trace
    assert_same(lm, before)


def test_nan_statistics_midway_roll_back_memit(tiny_models, monkeypatch):
    """Layer 0 is already written (temporarily) when layer 1's statistics turn out NaN."""
    lm = tiny_models["llama"]
    original = LayerStats.regularised

    def poisoned(self, layer, kind="down_proj"):
        c = original(self, layer, kind)
        return c * math.nan if layer == 1 else c

    monkeypatch.setattr(LayerStats, "regularised", poisoned)
    before = snapshot(lm)
    with pytest.raises(EditDivergedError):
        MemitEditor(MemitConfig(layers=(0, 1), mom2_update_weight=1.0, **FAST)).compute(lm, EditRequest(subject_last_fact(), "en"))
    assert_same(lm, before)


def test_layer_stats_are_cached_and_regularised(tiny_models, monkeypatch):
    lm = tiny_models["opt"]
    stats = LayerStats(lm, STATS)
    c = stats.second_moments([0, 1])
    assert torch.allclose(c[0], c[0].T, atol=1e-6) and torch.linalg.eigvalsh(c[0].double()).min() > -1e-6
    assert (stats.root / "down_proj-layer1-n8-t4-k50-seed0.safetensors").exists()
    monkeypatch.setattr(LayerStats, "_estimate", lambda *a: pytest.fail("recomputed a cached layer"))
    again = LayerStats(lm, STATS).second_moments([1])
    assert torch.equal(again[1], c[1])
    reg = regularise(c[0], 0.1)
    assert torch.allclose(reg - c[0].double(), 0.1 * torch.diagonal(c[0].double()).mean() * torch.eye(c[0].shape[0], dtype=torch.float64))


def test_subject_positions(tiny_models):
    lm = tiny_models["llama"]
    placeholder = EditPrompt("France", "The capital of {} is", "Lyon", "Paris")
    text = placeholder.filled()
    ids, pos = encode_at(lm, text, subject_end(placeholder))
    assert "France".endswith(lm.tokenizer.decode(ids[pos]).strip()[-3:])
    found = EditPrompt("France", "The capital of France is", "Lyon", "Paris")  # imported: no "{}"
    assert subject_end(found) == subject_end(placeholder)
    missing = EditPrompt("Frankreich", "The capital of France is", "Lyon", "Paris")
    ids, pos = encode_at(lm, missing.filled(), subject_end(missing))
    assert pos == len(ids) - 1  # fallback: the prompt's last token
    fact = Fact("x", "", {"en": FactInLanguage(missing)})
    rows = build_rows(lm, EditRequest(fact, "en"), ["", "Some prefix. "])
    assert rows.n_rewrite == 2 and rows.has_kl and int(rows.lookup[0]) == pos


def test_registry_and_family_defaults(tiny_lm):
    assert {"memla", "ft", "rome", "memit", "pmet", "ike"} <= set(METHODS)
    n = tiny_lm.num_layers
    for method in ("ft", "rome"):
        assert 0 <= default_config(method, tiny_lm).layer < n
    for method in ("memit", "pmet"):
        config = default_config(method, tiny_lm, kl_factor=0.5)
        assert config.layers and all(0 <= l < n for l in config.layers) and config.kl_factor == 0.5
        assert config.mom2_update_weight > 0
    assert isinstance(default_config("ike", tiny_lm), IkeConfig)


def test_relative_layers_on_the_default_model_depth():
    """Gemma 3 270M has 18 layers: the LLaMA-family positions give the layers hparams documents."""
    llama = hparams.FAMILY_DEFAULTS["llama"]
    assert hparams.layer_index(llama["rome"]["layer"], 18) == 6
    assert hparams.layer_range(*llama["memit"]["layers"], 18) == (4, 5, 6)
    assert hparams.layer_index(llama["ft"]["layer"], 18) == 12
    with pytest.raises(ValueError, match="outside"):
        hparams.layer_index(1.5, 18)
