"""MEND on the tiny models: the rank-1 gradient factors, the hypernetwork, training, resuming,
and edits that apply and revert bit for bit."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from memla_core.data.schema import EditPrompt, Fact, FactInLanguage
from memla_core.editing import EditRequest
from memla_core.editing.hparams import resolve
from memla_core.editing.locate import to_weight_layout
from memla_core.editing.mend import (
    HYPERNETWORK_FILE,
    MendConfig,
    MendEditor,
    MendNotTrainedError,
    answer_batch,
    answer_nll,
    build_hypernetwork,
    edited_weights,
    rank_one_factors,
)
from memla_core.editing.mend_training import MendTrainConfig, train_mend
from memla_core.scoring import encode_completion

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.one_thread


def capital_fact(country: str = "France", new: str = "Lyon", true: str = "Paris") -> Fact:
    block = FactInLanguage(
        EditPrompt(country, "The capital city of {} is", new, true),
        paraphrase_prompts=(f"The capital of {country} is",),
    )
    return Fact(f"test-{country.lower()}", "capital", {"en": block}, relation="capital")


def tiny_train_config(tmp_path, **overrides) -> MendTrainConfig:
    mend = MendConfig(checkpoint=str(tmp_path / "mend"))
    base = MendTrainConfig(
        mend=mend, rank=8, steps=4, lr=1e-3, lr_lr=1e-3, edit_lr=1e-2, locality_texts=4, locality_tokens=4,
        locality_batch=2, save_every=2,
    )
    return replace(base, **overrides)


def test_rank_one_factors_sum_to_the_autograd_gradient(tiny_lm):
    """∇_W L from autograd equals Σ_t δ_t u_tᵀ built from the captured factors, for both projections."""
    cfg = resolve(MendConfig(), "mend", tiny_lm)
    weights = edited_weights(tiny_lm, cfg)
    fact = capital_fact()
    e = fact.in_language("en").edit
    items = [encode_completion(tiny_lm, e.filled(), e.target_new, "en"),
             encode_completion(tiny_lm, "The capital of France is", e.target_new, "en")]
    batch = answer_batch(tiny_lm, items)  # two rows of different lengths: padding is excluded
    _, factors = rank_one_factors(tiny_lm, [w.module for w in weights], batch, lambda h: answer_nll(tiny_lm, batch, h)[0])

    params = [tiny_lm.model.get_parameter(w.parameter) for w in weights]
    try:
        for p in params:
            p.requires_grad_(True)
        with torch.enable_grad():
            hidden = tiny_lm.model.base_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
            loss = answer_nll(tiny_lm, batch, hidden)[0]
            grads = torch.autograd.grad(loss, params)
    finally:
        for p in params:
            p.requires_grad_(False)
    for w, grad in zip(weights, grads):
        u, delta = factors[w.module]
        assert u.shape[1] == w.d_in and delta.shape[1] == w.d_out
        assert u.shape[0] <= int(batch.attention_mask.sum())
        by_hand = to_weight_layout(tiny_lm, delta.T @ u)
        torch.testing.assert_close(by_hand, grad, rtol=1e-4, atol=1e-6)
        assert grad.abs().max() > 0


def test_hypernetwork_shapes_sharing_and_identity_start(tiny_models):
    lm = tiny_models["llama"]
    cfg = MendConfig(layers=(0, 1))
    weights = edited_weights(lm, cfg)
    assert [(w.d_in, w.d_out) for w in weights] == [(32, 64), (64, 32)] * 2  # up then down, per layer
    net = build_hypernetwork(weights, rank=8, n_hidden=1, edit_lr=0.5)
    assert sorted(net.nets) == ["32x64", "64x32"]  # one network per shape, shared by both layers
    for gt in net.nets.values():
        assert len(gt.layers) == 2  # n_hidden + 1
        assert all(layer.u.shape == (96, 8) and layer.mode_scale.shape == (2, 96) for layer in gt.layers)
    assert net.edit_lrs.shape == (4,)

    torch.manual_seed(0)
    factors = {w.module: (torch.randn(5, w.d_in), torch.randn(5, w.d_out)) for w in weights}
    net.update_statistics(factors)
    updates = net.pseudo_gradients(factors)
    for w in weights:
        assert updates[w.module].shape == (w.d_out, w.d_in)
    # Untrained, every low-rank layer is the identity, so ΔW = −η Σ δ̂ ûᵀ of the standardised factors.
    w = weights[0]
    gt = net.nets["32x64"]
    u, delta = factors[w.module]
    x = gt.standardise(torch.cat([u, delta], -1))
    expected = -0.5 * (x[:, 32:].T @ x[:, :32])
    torch.testing.assert_close(updates[w.module], expected)


def test_training_steps_lower_the_loss(tiny_models, tmp_path):
    """30 steps on one edit lower its post-edit loss; with learning rates ≈ 0 (the control: only
    the input statistics change) it stays where it started."""
    lm = tiny_models["llama"]

    def mean_edit_losses(folder, lr):
        cfg = tiny_train_config(tmp_path / folder, steps=30, paraphrases=False, save_every=100, lr=lr, lr_lr=lr)
        result = train_mend(lm, [capital_fact()], cfg)
        assert result.finished and len(result.history) == 30
        losses = [r["edit"] for r in result.history]
        return sum(losses[:5]) / 5, sum(losses[-5:]) / 5

    first, last = mean_edit_losses("trained", 1e-2)
    control_first, control_last = mean_edit_losses("control", 1e-12)
    assert last < first - 0.2
    assert abs(control_last - control_first) < 0.05
    assert (tmp_path / "trained" / "mend" / HYPERNETWORK_FILE).exists()


def test_resumed_training_equals_uninterrupted(tiny_models, tmp_path):
    lm = tiny_models["gpt2"]
    facts = [capital_fact(), capital_fact("Italy", "Milan", "Rome")]
    whole = train_mend(lm, facts, tiny_train_config(tmp_path / "a", steps=6))
    first = train_mend(lm, facts, tiny_train_config(tmp_path / "b", steps=6), stop_after=3)
    assert not first.finished and first.steps_done == 3
    assert not (tmp_path / "b" / "mend" / HYPERNETWORK_FILE).exists()
    second = train_mend(lm, facts, tiny_train_config(tmp_path / "b", steps=6))
    assert second.finished and second.history == whole.history
    a = torch.load(tmp_path / "a" / "mend" / HYPERNETWORK_FILE, weights_only=True)["hypernetwork"]
    b = torch.load(tmp_path / "b" / "mend" / HYPERNETWORK_FILE, weights_only=True)["hypernetwork"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_resume_with_other_settings_is_refused(tiny_models, tmp_path):
    lm = tiny_models["llama"]
    facts = [capital_fact()]
    train_mend(lm, facts, tiny_train_config(tmp_path, steps=4), stop_after=2)
    with pytest.raises(ValueError, match="--restart"):
        train_mend(lm, facts, tiny_train_config(tmp_path, steps=4, lr=5e-3))
    assert train_mend(lm, facts, tiny_train_config(tmp_path, steps=4, lr=5e-3), restart=True).finished


def test_edit_applies_and_reverts_bit_exactly(tiny_lm, tmp_path):
    cfg = tiny_train_config(tmp_path, steps=3)
    train_mend(tiny_lm, [capital_fact(), capital_fact("Italy", "Milan", "Rome")], cfg)
    before = {n: p.detach().clone() for n, p in tiny_lm.model.named_parameters()}
    edit = MendEditor(cfg.mend).compute(tiny_lm, EditRequest(capital_fact("Spain", "Seville", "Madrid"), "en"))
    assert [r["step"] for r in edit.trace] == [0, 1]
    assert edit.weight_deltas and all(torch.isfinite(d).all() and d.abs().max() > 0 for d in edit.weight_deltas.values())
    assert edit.details["trained_languages"] == ["en"]
    params = dict(tiny_lm.model.named_parameters())
    with edit.applied(tiny_lm):
        for name, delta in edit.weight_deltas.items():
            assert not torch.equal(params[name], before[name])
    for name, p in tiny_lm.model.named_parameters():
        assert torch.equal(p, before[name]), name


def test_missing_checkpoint_says_how_to_train(tiny_models, tmp_path):
    lm = tiny_models["llama"]
    editor = MendEditor(MendConfig(checkpoint=str(tmp_path / "none")))
    with pytest.raises(MendNotTrainedError, match="memla train-mend"):
        editor.compute(lm, EditRequest(capital_fact(), "en"))


def test_checkpoint_for_other_weights_is_refused(tiny_models, tmp_path):
    lm = tiny_models["llama"]
    cfg = tiny_train_config(tmp_path, steps=2)
    train_mend(lm, [capital_fact()], cfg)
    other = replace(cfg.mend, modules=("down_proj",))
    with pytest.raises(MendNotTrainedError, match="trained for"):
        MendEditor(other).compute(lm, EditRequest(capital_fact(), "en"))


def test_mend_is_registered_and_labelled_as_in_the_paper_tables():
    from memla_core.bench.paper import PAPER_METHOD_ORDER, load_paper_tables
    from memla_core.bench.summaries import method_label
    from memla_core.editing.registry import METHODS

    spec = METHODS["mend"]
    assert spec.config_cls is MendConfig and spec.editor_cls is MendEditor
    assert method_label("mend") == spec.title == "MEND" and "MEND" in PAPER_METHOD_ORDER
    assert (load_paper_tables().main["method"] == "MEND").any()
