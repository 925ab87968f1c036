"""What a benchmark run covers, and how method names turn into editor configs.

Method names are registry names (``memla``, ``ft``, ``rome`` …) optionally followed by a paper
Table 5 variant: ``memla:w/o LSM``. Overrides are dotted field paths (``neurons.steps``), so one
mechanism reaches nested configs such as MEMLA's ``NeuronConfig``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ..editing import registry
from ..editing.registry import METHODS, STEPS_ALIAS, ConfigFieldError, MethodSpec, build_editor, has_field, method_spec
from ..fields import converted, described, optional
from ..models import LoadedModel, ModelSpec


class BenchConfigError(ValueError):
    """A benchmark setting that cannot work; the message names the setting and the fix."""


@converted(
    out=Path,
    methods=lambda names: tuple(canonical_method(m) for m in names),
    source_languages=tuple,
    fact_ids=lambda ids: tuple(str(f) for f in ids),
    target_languages=optional(tuple),
)
@dataclass(frozen=True)
class BenchConfig:
    """One benchmark run: which model, facts, methods and languages, and where rows go. Given
    values are normalised first: method names canonical (``MEMLA:wo-lsm`` -> ``memla:w/o LSM``),
    sequences tuples, ``out`` a Path."""

    model: ModelSpec = described(help="model to edit", factory=ModelSpec)
    dataset: str = described("bundled", "'bundled' or an MKEB JSON file")
    methods: tuple[str, ...] = described(("memla",), "registry names, optionally 'memla:<Table 5 variant>'")
    source_languages: tuple[str, ...] = described(("en",), "edit languages")
    target_languages: tuple[str, ...] | None = described(
        None, "evaluation languages; None = every language of each fact"
    )
    fact_ids: tuple[str, ...] = described((), "only these facts, in this order")
    split: str = described("all", "dev, test or all facts (data/splits.py, docs/tuning.md)")
    per_relation: int | None = described(None, "only the first k facts of each relation of the split (its hash order)")
    limit: int | None = described(None, "at most this many facts (after fact_ids)")
    seed: int = described(0, "seeds torch before every edit and configs with a seed")
    common_overrides: Mapping[str, Any] = described(
        help="dotted field -> value, applied to every method config that has the field", factory=dict
    )
    method_overrides: Mapping[str, Mapping[str, Any]] = described(
        help="method name (or base name) -> {dotted field: value}; unknown fields are errors. "
        "'*' applies to every method that has the field",
        factory=dict,
    )
    out: Path = described(Path("results.csv"), "results CSV, appended to as it goes")
    parquet: bool = described(False, "also write the merged results as .parquet")
    overwrite: bool = described(False, "discard earlier rows instead of resuming")
    preset: str = described(
        "paper",
        "defaults every method starts from: 'paper' or 'tuned' (editing/presets.py); sweeps use "
        "'paper', so that a configuration's name says everything it changes",
    )
    known_only: bool = described(
        False,
        "skip (fact, source) pairs whose source-language fact the unedited model does not know "
        "(greedy decoding misses the true answer; memla_core.knowledge)",
    )
    barrier_timeout_s: float = described(
        24 * 3600.0, "how long processes wait for each other (shards finish at different times)"
    )

    def __post_init__(self) -> None:
        if not self.methods:
            raise BenchConfigError("BenchConfig.methods is empty; name at least one method, e.g. 'memla'.")
        if len(set(self.methods)) != len(self.methods):
            raise BenchConfigError(f"BenchConfig.methods lists a method twice: {', '.join(self.methods)}.")
        if not self.source_languages:
            raise BenchConfigError("BenchConfig.source_languages is empty; give at least one, e.g. 'en'.")
        if self.limit is not None and self.limit < 1:
            raise BenchConfigError("BenchConfig.limit must be at least 1 (or None for every fact).")
        if self.out.suffix.lower() != ".csv":
            raise BenchConfigError(
                f"BenchConfig.out must be a .csv file (got '{self.out}'); set parquet=True for a parquet copy."
            )
        for key in self.method_overrides:
            if key != "*" and base_method(key) not in METHODS:
                raise BenchConfigError(
                    f"method_overrides names '{key}', which is no method; available: {', '.join(METHODS)}."
                )


# --------------------------------------------------------------------------- method names


def base_method(name: str) -> str:
    """``memla:w/o LSM`` -> ``memla``; ``memla[lr=0.01]`` -> ``memla``."""
    return name.split("[", 1)[0].split(":", 1)[0].strip().lower()


def canonical_method(name: str) -> str:
    """Normalise a method name: ``MEMLA:wo-lsm`` -> ``memla:w/o LSM``; ``memla:MEMLA`` -> ``memla``.

    Shell-friendly spellings of the variants are accepted because ``w/o LSM`` needs quoting. A
    sweep's configuration is the method name with its overrides in brackets,
    ``memla[lr=0.003,neurons.threshold=0.1]`` (``bench.sweep``); they are applied last.
    """
    from .sweep import config_label, parse_label  # sweep builds on this module

    name, overrides = parse_label(name)
    if overrides:
        return config_label(canonical_method(name), overrides)
    base, sep, variant = name.strip().partition(":")
    base = base.strip().lower()
    spec = method_spec(base)  # unknown base -> error listing the available ones
    if not sep:
        return base
    if not spec.variants:
        raise BenchConfigError(f"Method '{base}' has no ablation variants; '{name}' cannot be run.")
    try:
        known = spec.variant_label(variant)
    except ConfigFieldError as err:
        raise BenchConfigError(str(err)) from None
    return base if known == next(iter(spec.variants)) else f"{base}:{known}"


def ablation_methods(base: str = "memla") -> tuple[str, ...]:
    """The full paper Table 5 set of method names, the unablated method first."""
    variants = tuple(method_spec(base).variants)
    return (base, *(f"{base}:{v}" for v in variants[1:]))


# --------------------------------------------------------------------------- method configs


@dataclass(frozen=True)
class MethodRun:
    """A method name resolved to its registry entry and final config."""

    name: str
    spec: MethodSpec
    config: Any

    @property
    def settings(self) -> str:
        """The config as sorted JSON: stored on every row and compared when resuming."""
        return json.dumps(dataclasses.asdict(self.config), sort_keys=True, default=str)

    @property
    def uses_neurons(self) -> bool:
        """Editors that take precomputed knowledge neurons (computed once per fact and source)."""
        return self.spec.uses_neurons

    def has_setting(self, path: str) -> bool:
        """Whether an override of ``path`` (``edit_steps`` included) reaches this method's config."""
        return has_field(self.config, self.spec.resolve_path(path))

    def editor(self, neurons=None, pool=None):
        """The editor, given what it can use: precomputed neurons (MEMLA) and the benchmark's facts
        as the demonstration pool of in-context methods (IKE), instead of the bundled ones."""
        return build_editor(self.spec, self.config, neurons=neurons, pool=pool)


def default_method_config(spec: MethodSpec, lm: LoadedModel, preset: str = "paper"):
    """The method's defaults for this model (baselines need model-specific layers) in ``preset``."""
    return registry.default_config(spec, lm, preset=preset)


def resolve_method(name: str, lm: LoadedModel, config: BenchConfig) -> MethodRun:
    """Registry entry + default config + ablation switches + seed + overrides + the label's own
    overrides (a sweep configuration), in that order."""
    from .sweep import parse_label

    name = canonical_method(name)
    method_name, label_overrides = parse_label(name)
    base, _, variant = method_name.partition(":")
    spec = method_spec(base)
    method_config = default_method_config(spec, lm, config.preset)
    if variant:
        method_config = spec.with_variant(method_config, variant)
    for path, value in lenient_overrides(config).items():
        path = spec.resolve_path(path)
        if has_field(method_config, path):
            method_config = set_field(method_config, path, value)
    for key in dict.fromkeys((base, method_name, name)):
        for path, value in dict(config.method_overrides.get(key, {})).items():
            target = spec.resolve_path(path)
            if target is None:
                raise BenchConfigError(f"{spec.title} has no optimisation steps; '{path}' cannot be set for {name}.")
            method_config = set_field(method_config, target, value, owner=name)
    for path, value in label_overrides.items():
        target = spec.resolve_path(path)
        if target is None:
            raise BenchConfigError(f"{spec.title} has no optimisation steps; '{path}' cannot be set for {name}.")
        method_config = set_field(method_config, target, value, owner=name)
    return MethodRun(name, spec, method_config)


def lenient_overrides(config: BenchConfig) -> dict[str, Any]:
    """Settings applied to every method config that has the field: the seed, ``common_overrides``
    and ``method_overrides["*"]``."""
    return {"seed": config.seed, **dict(config.common_overrides), **dict(config.method_overrides.get("*", {}))}


def set_field(config: Any, path: str, value: Any, owner: str = "") -> Any:
    """``registry.set_field`` (strict coercion of CLI strings to the field's type), its errors as
    benchmark-setting errors."""
    try:
        return registry.set_field(config, path, value, owner)
    except ConfigFieldError as err:
        raise BenchConfigError(str(err)) from None


def speed_overrides(
    ig_steps: int | None = None,
    ig_baseline: str | None = None,
    threshold: float | None = None,
    independent_languages: tuple[str, ...] | None = None,
    edit_steps: int | None = None,
) -> dict[str, Any]:
    """The settings people turn down when time is short, as ``common_overrides`` (None: default)."""
    common: dict[str, Any] = {}
    if ig_steps is not None:
        common["neurons.steps"] = ig_steps
    if ig_baseline is not None:
        common["neurons.baseline"] = ig_baseline
    if threshold is not None:
        common["neurons.threshold"] = threshold
    if independent_languages is not None:
        common["neurons.independent_languages"] = tuple(independent_languages)
    if edit_steps is not None:
        common[STEPS_ALIAS] = edit_steps  # each method's own step field (MethodSpec.step_field)
    return common
