"""The method registry: one MethodSpec per method, config fields with their help, strict
coercion that names the field, CLI flags that apply or are refused per method, and a method
added in a test with nothing but a config, an editor and one registry entry."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from types import MappingProxyType

import pytest

from memla_core.bench import BenchConfig, BenchConfigError, canonical_method, resolve_method
from memla_core.cli import build_parser, main
from memla_core.cli import edit as cli_edit
from memla_core.data import load_bundled
from memla_core.data.schema import Fact
from memla_core.editing import BatchEditRequest, Edit, FTConfig, IkeConfig, MemlaConfig, MemitConfig, RomeConfig
from memla_core.editing.base import ConfiguredEditor
from memla_core.editing.registry import (
    METHODS,
    ConfigFieldError,
    MethodSpec,
    build_editor,
    config_field,
    config_fields,
    set_field,
    set_fields,
)
from memla_core.fields import converted, optional

FACT = "geo-capital-france"


# --------------------------------------------------------------------------- fields and coercion


def test_config_fields_list_none_defaulted_and_nested_fields():
    rome = {f.path: f for f in config_fields(RomeConfig)}
    assert rome["layer"].kind is int and rome["layer"].optional and rome["layer"].default is None
    assert "stats.samples" in rome and rome["stats.samples"].group == "stats"
    memla = {f.path: f for f in config_fields(MemlaConfig)}
    assert memla["neurons.threshold"].kind is float and memla["neurons.threshold"].default == 0.3
    assert memla["neurons.baseline"].choices == ("eos", "zero")
    assert memla["lr"].label == "Learning rate" and "0.001" in memla["lr"].help
    memit_layers = config_field(MemitConfig, "layers")
    assert memit_layers.kind is tuple and memit_layers.item_kind is int and memit_layers.optional


@converted(layers=optional(tuple), tags=tuple)
@dataclass(frozen=True)
class Converted:
    name: str
    layers: tuple[int, ...] | None = None
    tags: tuple[str, ...] = field(default=(), kw_only=True)


def test_converted_converts_named_and_positional_arguments_and_replace():
    assert Converted("a", [1, 2], tags=["x"]) == Converted(name="a", layers=(1, 2), tags=("x",))
    assert Converted("a").layers is None and Converted("a", None).layers is None
    assert replace(Converted("a"), layers=[3]).layers == (3,)
    assert BatchEditRequest(list(load_bundled().facts[:2]), "en").facts == tuple(load_bundled().facts[:2])
    assert type(Fact("f", "r", languages=MappingProxyType({})).languages) is dict


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Converted(), "missing 1 required positional argument: 'name'"),
        (lambda: Converted("a", "b", "c"), "positional arguments"),
        (lambda: Converted("a", 5, size=2), "unexpected keyword argument 'size'"),  # 5 is never converted
        (lambda: Converted("a", 5, layers=[1]), "multiple values for argument 'layers'"),
    ],
)
def test_converted_leaves_wrong_arguments_to_the_dataclass(make, message):
    with pytest.raises(TypeError, match=message):
        make()


def test_converted_names_only_init_fields():
    with pytest.raises(TypeError, match="Converted has no init field size"):
        converted(size=int)(Converted)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_config_field_of_every_method_has_help(name):
    missing = [f.path for f in config_fields(METHODS[name].config_cls) if not f.help]
    assert not missing, f"{name}: add metadata={{'help': ...}} to {missing}"


@pytest.mark.parametrize(
    "config, path, value, message",
    [
        (FTConfig(), "steps", "abc", "'steps' expects an integer"),
        (FTConfig(), "steps", "2.5", "'steps' expects an integer"),
        (MemlaConfig(), "use_lse", "maybe", "'use_lse' expects true or false"),
        (MemlaConfig(), "use_lse", 2, "'use_lse' expects true or false"),
        (MemlaConfig(), "lr", True, "'lr' expects a number"),
        (MemlaConfig(), "lr", "fast", "'lr' expects a number"),
        (MemlaConfig(), "max_steps", None, "'max_steps' expects an integer"),
        (MemlaConfig(), "neurons.steps", "many", "'neurons.steps' expects an integer"),
        (MemlaConfig(), "neurons.baseline", "mean", "'neurons.baseline' must be one of eos, zero"),
        (MemitConfig(), "layers", "4,five", "'layers' expects a comma-separated list"),
        (RomeConfig(), "learning_rate", "1", "'learning_rate' is not a field"),
    ],
)
def test_strict_coercion_errors_name_the_field(config, path, value, message):
    with pytest.raises(ConfigFieldError, match=message):
        set_field(config, path, value)


def test_coercion_of_cli_strings_and_python_values():
    assert set_field(FTConfig(), "steps", "10").steps == 10
    assert set_field(FTConfig(), "steps", 10.0).steps == 10
    assert set_field(FTConfig(), "norm_constraint", "inf").norm_constraint == math.inf
    assert set_field(RomeConfig(layer=3), "layer", "none").layer is None
    assert set_field(MemitConfig(), "layers", "4, 5").layers == (4, 5)
    assert set_field(MemitConfig(), "layers", "[4, 5]").layers == (4, 5)
    assert set_field(MemlaConfig(), "use_lse", "off").use_lse is False
    assert set_field(MemlaConfig(), "neurons.independent_languages", "en,de").neurons.independent_languages == ("en", "de")
    assert set_field(RomeConfig(), "stats.samples", "8").stats.samples == 8


def test_set_fields_checks_the_final_combination_only():
    config = set_fields(MemlaConfig(use_lse=False), {"use_lse": "true", "use_lie": "false"})
    assert config.use_lse and not config.use_lie
    with pytest.raises(ValueError, match="use_lse / use_lie"):
        set_fields(MemlaConfig(), {"use_lse": False, "use_lie": False})


# --------------------------------------------------------------------------- the CLI's flags

FLAG_VALUES = {
    "--rank-multiplier": "2", "--lr": "0.01", "--max-steps": "3", "--coefficient": "1",
    "--ig-steps": "2", "--ig-baseline": "zero", "--threshold": "0.2", "--independent-langs": "en,fr",
}


def _edit_args(*extra: str):
    return build_parser().parse_args(["edit", "--fact", FACT, *extra])


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("flag", [f.option for f in cli_edit.SETTING_FLAGS])
def test_each_setting_flag_applies_or_is_refused(method, flag):
    spec = METHODS[method]
    path = spec.resolve_path(next(f.path for f in cli_edit.SETTING_FLAGS if f.option == flag))
    args = _edit_args("--method", method, flag, FLAG_VALUES[flag])
    if path is not None and any(f.path == path for f in config_fields(spec.config_cls)):
        [(applied, value)] = cli_edit.requested_settings(args, spec)
        assert applied == path and value is not None
    else:
        with pytest.raises(ValueError, match=f"{flag} does not apply to {spec.title}"):
            cli_edit.requested_settings(args, spec)


def test_ft_takes_lr_and_max_steps_from_the_flags(tiny_models):
    args = _edit_args("--method", "ft", "--lr", "1e9", "--max-steps", "4", "--set", "norm_constraint=inf")
    config = cli_edit.method_config(args, tiny_models["llama"])
    assert (config.lr, config.steps, config.norm_constraint) == (1e9, 4, math.inf)
    rome = cli_edit.method_config(_edit_args("--method", "rome", "--max-steps", "2", "--set", "layer=1"), tiny_models["llama"])
    assert (rome.v_steps, rome.layer) == (2, 1)
    memla = cli_edit.method_config(_edit_args("--ablation", "wo-lsm", "--threshold", "0.2"), tiny_models["llama"])
    assert memla.mask_lse is False and memla.neurons.threshold == 0.2


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--method", "ft", "--set", "steps=abc"], "--set steps=abc: 'steps' expects an integer"),
        (["--method", "rome", "--lr", "1"], "--lr does not apply to ROME"),
        (["--method", "ike", "--max-steps", "3"], "--max-steps does not apply to IKE"),
        (["--method", "rome", "--ablation", "wo-lsm"], "--ablation does not apply to ROME"),
        (["--method", "ft", "--no-cache"], "--no-cache applies to methods that find knowledge neurons"),
        (["--set", "use_lse=maybe"], "'use_lse' expects true or false"),
        (["--ablation", "wo-everything"], "Unknown variant 'wo-everything' of memla"),
    ],
)
def test_cli_refuses_before_loading_the_model(argv, message, capsys):
    # The default model is not loaded for these: the refusal comes first and is immediate.
    assert main(["edit", "--fact", FACT, *argv]) == 2
    assert message in capsys.readouterr().err


def test_ike_takes_its_demonstrations_from_the_dataset(tiny_checkpoints, tmp_path, monkeypatch, capsys):
    records = load_bundled().to_records()[:4]
    path = tmp_path / "four.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    built = {}
    real = cli_edit.build_editor

    def spy(spec, config, neurons=None, pool=None):
        built["pool"] = pool
        return real(spec, config, neurons=neurons, pool=pool)

    monkeypatch.setattr(cli_edit, "build_editor", spy)
    argv = ["edit", "--model", str(tiny_checkpoints["llama"]), "--dataset", str(path), "--fact", records[0]["example_id"],
            "--method", "ike", "--langs", "en", "--out", str(tmp_path / "ike.json")]
    assert main(argv) == 0, capsys.readouterr().err
    assert [f.example_id for f in built["pool"]] == [r["example_id"] for r in records]


# --------------------------------------------------------------------------- a new method


@dataclass(frozen=True)
class EchoConfig:
    """A method defined only in this test."""

    repeats: int = field(default=1, metadata={"help": "How often the new fact is put before the prompt."})
    iterations: int = field(default=5, metadata={"help": "Pretend optimisation steps."})
    loud: bool = field(default=False, metadata={"help": "Upper-case the new fact."})


class EchoEditor:
    name = "echo"

    def __init__(self, config: EchoConfig, pool=None):
        self.config, self.pool = config, pool

    def compute(self, lm, request, on_step=None) -> Edit:
        prompt = request.prompt
        text = f"{prompt.filled()} {prompt.target_new}. "
        return Edit("echo", request.fact.example_id, request.source_language,
                    context=(text.upper() if self.config.loud else text) * self.config.repeats)


def test_a_new_method_needs_one_registry_entry(monkeypatch, tiny_models, bundled):
    spec = MethodSpec("echo", "Echo", EchoConfig, EchoEditor, "the new fact, repeated", uses_fact_pool=True,
                      step_field="iterations", variants={"Echo": {}, "loud": {"loud": True}})
    monkeypatch.setitem(METHODS, "echo", spec)  # removed again when the test ends

    editor = build_editor("echo", pool=bundled.facts[:2], neurons="not used by echo")
    assert editor.config == EchoConfig() and len(editor.pool) == 2

    assert canonical_method("ECHO:Loud") == "echo:loud"
    bench = BenchConfig(methods=("echo:loud",), common_overrides={"edit_steps": 7},
                        method_overrides={"echo": {"repeats": "3"}})
    run = resolve_method("echo:loud", tiny_models["gpt2"], bench)
    assert run.config == EchoConfig(repeats=3, iterations=7, loud=True)
    assert run.has_setting("edit_steps") and not run.uses_neurons
    assert run.editor(pool=bundled.facts).pool == bundled.facts
    with pytest.raises(BenchConfigError, match="'repeats' expects an integer"):
        resolve_method("echo", tiny_models["gpt2"], BenchConfig(methods=("echo",), method_overrides={"echo": {"repeats": "x"}}))

    args = _edit_args("--method", "echo", "--max-steps", "2", "--ablation", "loud", "--set", "repeats=2")
    assert cli_edit.method_config(args, tiny_models["gpt2"]) == EchoConfig(repeats=2, iterations=2, loud=True)
    with pytest.raises(ValueError, match="--lr does not apply to Echo"):
        cli_edit.requested_settings(_edit_args("--method", "echo", "--lr", "1"), spec)


def test_a_configured_editor_must_define_edit_weights():
    class Forgetful(ConfiguredEditor):
        name = "forgetful"
        config_cls = EchoConfig

    with pytest.raises(TypeError, match="abstract method 'edit_weights'|abstract method edit_weights"):
        Forgetful()

    class Zero(Forgetful):
        def edit_weights(self, lm, request, cfg, on_step):
            return {}, [], {}

    assert Zero().config == EchoConfig()


def test_a_registry_entry_is_checked_against_its_config():
    with pytest.raises(TypeError, match="step_field 'repeat'"):
        MethodSpec("echo", "Echo", EchoConfig, EchoEditor, "", step_field="repeat")
    with pytest.raises(TypeError, match="uses_neurons needs a 'neurons"):
        MethodSpec("echo", "Echo", EchoConfig, EchoEditor, "", uses_neurons=True)
    with pytest.raises(TypeError, match="variant 'quiet' switches 'volume'"):
        MethodSpec("echo", "Echo", EchoConfig, EchoEditor, "", variants={"quiet": {"volume": 0}})
    assert METHODS["ike"].uses_fact_pool and METHODS["memla"].uses_neurons
    assert {n: s.step_field for n, s in METHODS.items() if n in ("memla", "ft", "rome", "ike")} == {
        "memla": "max_steps", "ft": "steps", "rome": "v_steps", "ike": None}
    assert list(METHODS["memla"].variants) == ["MEMLA", "w/o LSM", "w/o LSE", "w/o LIM", "w/o LIE"]
    assert IkeConfig() == METHODS["ike"].config_cls()
