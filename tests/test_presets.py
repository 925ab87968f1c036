"""Presets: 'paper' is the config classes' defaults; 'tuned' changes only what the table says, only
for its model type; every entry of the table is a real field of its method's config."""

from __future__ import annotations

import pytest

from memla_core.editing import presets
from memla_core.editing.registry import METHODS, default_config, has_field


def test_tuned_applies_only_its_fields_for_its_model_type(tiny_models, monkeypatch):
    lm = tiny_models["llama"]
    kind = presets.model_type(lm)
    monkeypatch.setitem(presets.TUNED, kind, {"memla": {"neurons.threshold": 0.1, "stop_p_new": 0.999}})
    paper = default_config("memla", lm, preset="paper")
    tuned = default_config("memla", lm, preset="tuned")
    assert (tuned.neurons.threshold, tuned.stop_p_new) == (0.1, 0.999)
    assert (paper.neurons.threshold, paper.stop_p_new) == (0.3, 0.96)
    assert tuned.lr == paper.lr and tuned.neurons.steps == paper.neurons.steps
    assert presets.has_tuned("memla", lm) and not presets.has_tuned("ft", lm)
    assert default_config("ft", lm, preset="tuned") == default_config("ft", lm, preset="paper")
    other = tiny_models["gpt2"]
    assert default_config("memla", other, preset="tuned") == default_config("memla", other, preset="paper")
    assert "tuned (" in presets.describe_preset("memla", lm, "tuned")
    assert "no tuned" in presets.describe_preset("ft", lm, "tuned")
    with pytest.raises(ValueError, match="preset"):
        presets.preset_values("memla", lm, "best")


def test_every_tuned_entry_names_real_fields():
    for kind, methods in presets.TUNED.items():
        assert kind in presets.TUNED_PROVENANCE, f"{kind}: tuned values without provenance"
        for method, values in methods.items():
            assert method in METHODS
            for path in values:
                assert has_field(METHODS[method].config_cls, path), f"{kind}/{method}: no field {path}"


def test_bench_and_edit_take_the_preset(tiny_models, monkeypatch):
    from memla_core.bench import BenchConfig, resolve_method
    from memla_core.cli import build_parser

    lm = tiny_models["llama"]
    monkeypatch.setitem(presets.TUNED, presets.model_type(lm), {"memla": {"lr": 0.02}})
    assert resolve_method("memla", lm, BenchConfig()).config.lr == 1e-3  # bench default: paper
    assert resolve_method("memla", lm, BenchConfig(preset="tuned")).config.lr == 0.02
    args = build_parser().parse_args(["edit", "--fact", "geo-capital-france"])
    assert args.preset == "tuned"  # memla edit starts from the tuned preset
    with pytest.raises(ValueError, match="paper preset"):
        from memla_core.cli.sweep import sweep_config

        sweep_config(build_parser().parse_args(["sweep", "--grid", "memla.lr=0.1", "--preset", "tuned"]))


def test_tuned_layers_are_relative_depths_made_absolute_per_model(tiny_models, monkeypatch):
    lm = tiny_models["llama"]
    last = lm.num_layers - 1
    monkeypatch.setitem(presets.TUNED, presets.model_type(lm), {
        "ft": {"layer": 1.0, "lr": 0.01}, "memit": {"layers": (0.0, 1.0)},
    })
    assert presets.preset_values("ft", lm, "tuned") == {"layer": last, "lr": 0.01}
    assert default_config("memit", lm, preset="tuned").layers == (0, last)  # the listed layers, not a range


def test_tuned_depths_that_fall_on_one_layer_of_a_smaller_model_give_it_once(tiny_models, monkeypatch):
    """The default model's MEMIT preset (layers 3/17 and 8/17) on a 2-layer model of its type."""
    lm = tiny_models["llama"]
    monkeypatch.setitem(presets.TUNED, presets.model_type(lm), {"memit": {"layers": (3 / 17, 8 / 17)}})
    assert lm.num_layers == 2
    assert default_config("memit", lm, preset="tuned").layers == (0,)  # not (0, 0), which MemitConfig refuses
