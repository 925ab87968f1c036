"""What a benchmark run covers, and how method names turn into editor configs.

Method names are registry names (``memla``, ``ft``, ``rome`` …) optionally followed by a paper
Table 5 variant: ``memla:w/o LSM``. Overrides are dotted field paths (``neurons.steps``), so one
mechanism reaches nested configs such as MEMLA's ``NeuronConfig``.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..editing import hparams
from ..editing.memla import ABLATIONS
from ..editing.registry import METHODS, MethodSpec, method_spec
from ..models import LoadedModel, ModelSpec

ABLATION_VARIANTS: dict[str, tuple[str, ...]] = {"memla": ABLATIONS}
"""Methods whose config class offers ``ablation(variant)``, with the variants it knows."""


class BenchConfigError(ValueError):
    """A benchmark setting that cannot work; the message names the setting and the fix."""


@dataclass(frozen=True)
class BenchConfig:
    """One benchmark run: which model, facts, methods and languages, and where rows go."""

    model: ModelSpec = field(default_factory=ModelSpec, metadata={"help": "model to edit"})
    dataset: str = field(default="bundled", metadata={"help": "'bundled' or an MKEB JSON file"})
    methods: tuple[str, ...] = field(
        default=("memla",), metadata={"help": "registry names, optionally 'memla:<Table 5 variant>'"}
    )
    source_languages: tuple[str, ...] = field(default=("en",), metadata={"help": "edit languages"})
    target_languages: tuple[str, ...] | None = field(
        default=None, metadata={"help": "evaluation languages; None = every language of each fact"}
    )
    fact_ids: tuple[str, ...] = field(default=(), metadata={"help": "only these facts, in this order"})
    limit: int | None = field(default=None, metadata={"help": "at most this many facts (after fact_ids)"})
    seed: int = field(default=0, metadata={"help": "seeds torch before every edit and configs with a seed"})
    common_overrides: Mapping[str, Any] = field(
        default_factory=dict,
        metadata={"help": "dotted field -> value, applied to every method config that has the field"},
    )
    method_overrides: Mapping[str, Mapping[str, Any]] = field(
        default_factory=dict,
        metadata={
            "help": "method name (or base name) -> {dotted field: value}; unknown fields are errors. "
            "'*' applies to every method that has the field"
        },
    )
    out: Path = field(default=Path("results.csv"), metadata={"help": "results CSV, appended to as it goes"})
    parquet: bool = field(default=False, metadata={"help": "also write the merged results as .parquet"})
    overwrite: bool = field(default=False, metadata={"help": "discard earlier rows instead of resuming"})
    barrier_timeout_s: float = field(
        default=24 * 3600.0,
        metadata={"help": "how long processes wait for each other (shards finish at different times)"},
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))
        object.__setattr__(self, "methods", tuple(canonical_method(m) for m in self.methods))
        object.__setattr__(self, "source_languages", tuple(self.source_languages))
        object.__setattr__(self, "fact_ids", tuple(str(f) for f in self.fact_ids))
        if self.target_languages is not None:
            object.__setattr__(self, "target_languages", tuple(self.target_languages))
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


def _squash(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def base_method(name: str) -> str:
    """``memla:w/o LSM`` -> ``memla``."""
    return name.split(":", 1)[0].strip().lower()


def canonical_method(name: str) -> str:
    """Normalise a method name: ``MEMLA:wo-lsm`` -> ``memla:w/o LSM``; ``memla:MEMLA`` -> ``memla``.

    Shell-friendly spellings of the variants are accepted because ``w/o LSM`` needs quoting.
    """
    base, sep, variant = name.strip().partition(":")
    base = base.strip().lower()
    method_spec(base)  # unknown base -> error listing the available ones
    if not sep:
        return base
    variants = ABLATION_VARIANTS.get(base)
    if not variants:
        raise BenchConfigError(f"Method '{base}' has no ablation variants; '{name}' cannot be run.")
    wanted = _squash(variant)
    for known in variants:
        if _squash(known) == wanted or _squash(known.replace("w/o", "no")) == wanted:
            return base if known == variants[0] else f"{base}:{known}"
    raise BenchConfigError(
        f"Unknown variant '{variant}' of {base}; choose one of {', '.join(variants)} "
        f"(written e.g. '{base}:wo-lsm')."
    )


def ablation_methods(base: str = "memla") -> tuple[str, ...]:
    """The full paper Table 5 set of method names, the unablated method first."""
    variants = ABLATION_VARIANTS[base]
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
        """Editors that accept precomputed knowledge neurons (computed once per fact and source)."""
        return hasattr(self.config, "neurons") and _accepts(self.spec.editor_cls, "neurons")

    def editor(self, neurons=None, pool=None):
        """The editor, given what it can use: precomputed neurons (MEMLA) and the benchmark's facts
        as the demonstration pool of in-context methods (IKE), instead of the bundled ones."""
        extras = {}
        if self.uses_neurons:
            extras["neurons"] = neurons
        if pool is not None and _accepts(self.spec.editor_cls, "pool"):
            extras["pool"] = pool
        return self.spec.editor_cls(self.config, **extras)


def _accepts(fn, name: str) -> bool:
    import inspect

    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def default_method_config(spec: MethodSpec, lm: LoadedModel):
    """The method's defaults for this model (baselines need model-specific layers)."""
    return hparams.default_config(spec.name, lm)


def resolve_method(name: str, lm: LoadedModel, config: BenchConfig) -> MethodRun:
    """Registry entry + default config + ablation switches + seed + overrides, in that order."""
    name = canonical_method(name)
    base, _, variant = name.partition(":")
    spec = method_spec(base)
    method_config = default_method_config(spec, lm)
    if variant:
        switched = type(method_config).ablation(variant)
        plain = type(method_config)()
        switches = {
            f.name: getattr(switched, f.name)
            for f in dataclasses.fields(switched)
            if getattr(switched, f.name) != getattr(plain, f.name)
        }
        method_config = dataclasses.replace(method_config, **switches)
    for path, value in lenient_overrides(config).items():
        if has_field(method_config, path):
            method_config = set_field(method_config, path, value)
    for key in (base, name):
        for path, value in dict(config.method_overrides.get(key, {})).items():
            method_config = set_field(method_config, path, value, owner=name)
    return MethodRun(name, spec, method_config)


def lenient_overrides(config: BenchConfig) -> dict[str, Any]:
    """Settings applied to every method config that has the field: the seed, ``common_overrides``
    and ``method_overrides["*"]``."""
    return {"seed": config.seed, **dict(config.common_overrides), **dict(config.method_overrides.get("*", {}))}


def has_field(config: Any, path: str) -> bool:
    head, _, rest = path.partition(".")
    if not dataclasses.is_dataclass(config) or head not in {f.name for f in dataclasses.fields(config)}:
        return False
    return has_field(getattr(config, head), rest) if rest else True


def set_field(config: Any, path: str, value: Any, owner: str = "") -> Any:
    """A copy of a (frozen, possibly nested) dataclass with ``path`` set to ``value``, coerced to
    the field's current type so that CLI strings work."""
    head, _, rest = path.partition(".")
    names = [f.name for f in dataclasses.fields(config)] if dataclasses.is_dataclass(config) else []
    if head not in names:
        where = f" of {owner}" if owner else ""
        raise BenchConfigError(
            f"'{path}' is not a field{where}'s config {type(config).__name__}; fields: {', '.join(names)}."
        )
    current = getattr(config, head)
    new = set_field(current, rest, value, owner) if rest else coerce(value, current, path)
    return dataclasses.replace(config, **{head: new})


def coerce(value: Any, current: Any, path: str = "value") -> Any:
    """``value`` (often a CLI string) as the type of ``current``."""
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
    else:
        parsed = value
    try:
        if isinstance(current, bool):
            if isinstance(parsed, str):
                if parsed.lower() not in ("true", "false", "yes", "no", "on", "off", "1", "0"):
                    raise ValueError(parsed)
                return parsed.lower() in ("true", "yes", "on", "1")
            return bool(parsed)
        if isinstance(current, int):
            if isinstance(parsed, float) and not parsed.is_integer():
                raise ValueError(parsed)
            return int(parsed)
        if isinstance(current, float):
            return float(parsed)
        if isinstance(current, tuple):
            if isinstance(parsed, str):
                return tuple(p.strip() for p in parsed.split(",") if p.strip())
            return tuple(parsed)
        if isinstance(current, str):
            return str(value)
    except (TypeError, ValueError):
        raise BenchConfigError(
            f"'{path}' expects a {type(current).__name__} (now {current!r}); cannot use {value!r}."
        ) from None
    return parsed


EDIT_STEP_FIELDS = ("max_steps", "steps", "num_steps", "v_steps")
"""Optimisation-step fields of the method configs (MEMLA ``max_steps``, ROME ``v_steps`` …):
one "edit steps" setting sets whichever a method has."""


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
        common.update({name: edit_steps for name in EDIT_STEP_FIELDS})
    return common
