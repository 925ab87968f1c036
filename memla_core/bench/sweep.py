"""Sweeps: many configurations of one or more methods, run as one benchmark.

A configuration is named by its method and the fields it changes, ``memla[lr=0.003,neurons.
threshold=0.1]``; that name is the ``method`` of its rows, so a sweep is an ordinary benchmark
run (same resumable results file, same runner, attributions and unedited scores shared by every
configuration of a fact). Every sweep also runs each method's default configuration (the plain
name, ``memla``): the reference the selection rule compares with.

Grid values are separated by commas; a tuple value joins its items with ``+``
(``memla.neurons.independent_languages=en+zh+fr,en+zh``).
"""

from __future__ import annotations

import itertools
import random
import re
from dataclasses import dataclass
from typing import Mapping, Sequence

from ..editing.registry import coerce, config_field, method_spec
from .config import BenchConfigError, base_method, canonical_method

_LABEL = re.compile(r"^(?P<method>[^\[\]]+)\[(?P<body>[^\[\]]*)\]$")


@dataclass(frozen=True)
class Axis:
    """One swept field: ``method.path`` takes each of ``values`` (strings, coerced per field)."""

    method: str
    path: str
    values: tuple[str, ...]


def parse_axis(text: str) -> Axis:
    """``memla.neurons.threshold=0.05,0.1`` -> Axis('memla', 'neurons.threshold', ('0.05', '0.1'))."""
    target, sep, values = text.partition("=")
    method, dot, path = target.strip().partition(".")
    items = tuple(v.strip() for v in values.split(",") if v.strip())
    if not sep or not dot or not path or not items:
        raise BenchConfigError(
            f"--grid {text}: expected METHOD.FIELD=V1,V2,…, e.g. memla.neurons.threshold=0.05,0.1,0.2."
        )
    if "[" in path or "]" in path or any(c in v for v in items for c in "[],="):
        raise BenchConfigError(f"--grid {text}: field names and values cannot contain '[', ']', ',' or '='.")
    return Axis(canonical_method(method), path.strip(), tuple(dict.fromkeys(items)))


def _value(text: str) -> str:
    """Grid spelling -> what ``coerce`` reads: ``en+zh`` is the tuple ``en,zh``."""
    return text.replace("+", ",")


def config_label(method: str, overrides: Mapping[str, str]) -> str:
    """``memla`` + {lr: 0.003} -> ``memla[lr=0.003]``; no overrides -> the plain method name."""
    if not overrides:
        return method
    body = ",".join(f"{k}={str(v).replace(',', '+')}" for k, v in sorted(overrides.items()))
    return f"{method}[{body}]"


def parse_label(name: str) -> tuple[str, dict[str, str]]:
    """``memla[lr=0.003,neurons.threshold=0.1]`` -> ('memla', {...}); other names unchanged."""
    match = _LABEL.match(name.strip())
    if not match:
        if "[" in name or "]" in name:
            raise BenchConfigError(f"'{name}' is not a configuration name like memla[lr=0.003,neurons.threshold=0.1].")
        return name, {}
    overrides: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in match.group("body").split(","))):
        path, sep, value = item.partition("=")
        if not sep or not path.strip():
            raise BenchConfigError(f"'{name}': '{item}' is not FIELD=VALUE.")
        overrides[path.strip()] = _value(value.strip())
    return match.group("method").strip(), overrides


def expand(
    axes: Sequence[Axis], methods: Sequence[str] = (), samples: int | None = None, seed: int = 0
) -> tuple[str, ...]:
    """Configuration names: each method's default first, then the full grid of its axes or, with
    ``samples``, that many distinct grid points drawn with ``seed`` (a seeded random search).

    ``methods`` adds methods swept only at their default (e.g. a baseline for reference).
    """
    by_method: dict[str, list[Axis]] = {canonical_method(m): [] for m in methods}
    for axis in axes:
        by_method.setdefault(axis.method, []).append(axis)
    names: list[str] = []
    for method, method_axes in by_method.items():
        paths = [a.path for a in method_axes]
        if len(set(paths)) != len(paths):
            raise BenchConfigError(f"--grid names {method}.{paths} more than once; give each field one list.")
        points = [dict(zip(paths, combo)) for combo in itertools.product(*(a.values for a in method_axes))]
        points = [p for p in points if p and not _is_default_point(method, p)]  # the default is added below
        if samples is not None and samples < len(points):
            points = random.Random(f"{seed}:{method}").sample(points, samples)
        names.append(method)
        names += [config_label(method, {k: _value(v) for k, v in p.items()}) for p in points]
    return tuple(dict.fromkeys(names))


def _is_default_point(method: str, point: Mapping[str, str]) -> bool:
    """Whether ``point`` sets every field to its config class's default: the default configuration
    under a second name, which would spend one configuration of the budget twice. Fields whose
    default is None (taken from ``hparams`` per model) cannot be told apart here and never match."""
    config_cls = method_spec(base_method(method)).config_cls
    for path, text in point.items():
        spec = config_field(config_cls, path)
        if spec.default is None or coerce(text, spec) != spec.default:
            return False
    return True


def configs_per_method(names: Sequence[str]) -> dict[str, int]:
    """How many configurations each base method has (the budget the tuning compares)."""
    counts: dict[str, int] = {}
    for name in names:
        counts[base_method(name)] = counts.get(base_method(name), 0) + 1
    return counts
