"""Editing methods by name: one ``MethodSpec`` per method is all the CLI, the app, the session and
the benchmark know about it.

A method is a frozen config dataclass, whose fields carry their own help
(``field(default=…, metadata={"help": …, "label": …})``), and an editor class built as
``editor_cls(config, **extras)`` that offers ``compute(lm, request, on_step) -> Edit``. What an
editor takes besides its config is declared in its spec, never guessed from its signature:

- ``uses_neurons``: the config has a ``neurons: NeuronConfig`` field and the editor takes
  ``neurons=NeuronSets`` found with it (computed once per fact and source, then shared);
- ``uses_fact_pool``: the editor takes ``pool=`` facts (IKE draws its demonstrations from them);
- ``step_field``: the config field counting optimisation steps (progress bars, ``--max-steps``,
  the benchmark's ``--edit-steps``; ``edit_steps`` is accepted as its name everywhere);
- ``variants``: named field switches, such as MEMLA's Table 5 ablations;
- ``batchable``: the editor also has ``compute_batch(lm, batch, on_step)``, one edit of k facts
  (``batch``); callers offer batches only where it is set, and ``check_batchable`` refuses the rest.

Adding a method: its file in ``editing/`` (config + editor) and one entry in ``METHODS``. The
baselines' ``None`` fields are filled per architecture (``hparams``) by ``default_config``.
"""

from __future__ import annotations

import json
import re
import types
from dataclasses import MISSING, Field, dataclass, field, fields, is_dataclass, replace
from typing import Any, Callable, Literal, Mapping, Union, get_args, get_origin, get_type_hints

from . import hparams, presets
from .batch import batch_refusal
from .ft import FTConfig, FTEditor
from .ike import IkeConfig, IkeEditor
from .memit import MemitConfig, MemitEditor
from .memla import ABLATIONS, MemlaConfig, MemlaEditor
from .mend import MendConfig, MendEditor
from .pmet import PmetConfig, PmetEditor
from .rome import RomeConfig, RomeEditor

STEPS_ALIAS = "edit_steps"
"""A field name every method understands: its ``step_field`` (MEMLA ``max_steps``, ROME ``v_steps`` …)."""


class ConfigFieldError(ValueError):
    """A setting that cannot be applied to a method config; the message names the field."""


# --------------------------------------------------------------------------- config fields


@dataclass(frozen=True)
class ConfigField:
    """One settable field of a config, nested fields as dotted paths (``neurons.threshold``)."""

    path: str
    kind: type  # bool, int, float, str or tuple; object for types set only from Python
    default: Any
    optional: bool = False  # None allowed (the baselines: "take it from hparams")
    choices: tuple[Any, ...] = ()  # a Literal's values
    item_kind: type | None = None  # element type of a tuple
    label: str = ""
    help: str = ""

    @property
    def name(self) -> str:
        return self.path.rpartition(".")[2]

    @property
    def group(self) -> str:
        """The nested config holding the field (``neurons``), or ``""`` at the top level."""
        return self.path.rpartition(".")[0]


_SCALARS = (bool, int, float, str)


def _unwrap_optional(hint: Any) -> tuple[Any, bool]:
    if get_origin(hint) in (Union, types.UnionType):
        args = get_args(hint)
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return rest[0], len(rest) < len(args)
    return hint, False


def _default(f: Field) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING


def config_fields(config_cls: type, prefix: str = "") -> tuple[ConfigField, ...]:
    """Every settable field of ``config_cls``, nested dataclasses flattened into dotted paths.

    Fields whose default is ``None`` are included (ROME's ``layer``: ``None`` means the
    architecture's default, and forms and the CLI must be able to set it).
    """
    hints = get_type_hints(config_cls)
    found: list[ConfigField] = []
    for f in fields(config_cls):
        hint, optional = _unwrap_optional(hints[f.name])
        default = _default(f)
        path = f"{prefix}{f.name}"
        if isinstance(hint, type) and is_dataclass(hint):
            found.extend(config_fields(hint, prefix=f"{path}."))
            continue
        choices: tuple[Any, ...] = ()
        item_kind = None
        if get_origin(hint) is Literal:
            choices = get_args(hint)
            kind = type(choices[0])
        elif get_origin(hint) is tuple:
            kind = tuple
            args = [a for a in get_args(hint) if a is not Ellipsis]
            item_kind = args[0] if args and args[0] in _SCALARS else None
        else:
            kind = hint if hint in _SCALARS else object
        label = f.metadata.get("label") or f.name.replace("_", " ").capitalize()
        found.append(ConfigField(path, kind, default, optional, choices, item_kind, label, f.metadata.get("help", "")))
    return tuple(found)


def _nested(config_cls: type, prefix: str = "") -> set[str]:
    """Paths of the nested configs themselves (``neurons``), which can be replaced as a whole."""
    found: set[str] = set()
    hints = get_type_hints(config_cls)
    for f in fields(config_cls):
        hint, _ = _unwrap_optional(hints[f.name])
        if isinstance(hint, type) and is_dataclass(hint):
            found |= {f"{prefix}{f.name}"} | _nested(hint, f"{prefix}{f.name}.")
    return found


def config_field(config_cls: type, path: str) -> ConfigField:
    """The field at ``path``; an unknown path is an error listing the fields there are."""
    for f in config_fields(config_cls):
        if f.path == path:
            return f
    known = ", ".join(f.path for f in config_fields(config_cls))
    raise ConfigFieldError(f"'{path}' is not a field of {config_cls.__name__}; fields: {known}.")


def has_field(config: Any, path: str | None) -> bool:
    """Whether ``config`` (an instance or class) has a field, or a nested config, at ``path``."""
    if not path or not is_dataclass(config):
        return False
    cls = config if isinstance(config, type) else type(config)
    return path in _nested(cls) or any(f.path == path for f in config_fields(cls))


_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")
_KIND_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "text", tuple: "a comma-separated list"}


def coerce(value: Any, spec: ConfigField) -> Any:
    """``value`` (a CLI or form string, or a Python value) as the type of the field ``spec``.

    Strict: anything that is not clearly of the field's type is an error naming the field
    ("--set steps=abc" says ``steps`` expects an integer). ``none`` (or an empty text) sets a
    field that allows ``None``.
    """
    try:
        result = _coerce(value, spec)
    except (TypeError, ValueError):
        expected = _KIND_NAMES.get(spec.kind, spec.kind.__name__)
        if spec.choices:
            expected = "one of " + ", ".join(map(str, spec.choices))
        empty = " (or none: the default for the architecture)" if spec.optional else ""
        raise ConfigFieldError(
            f"'{spec.path}' expects {expected}{empty}; got {value!r} (its default is {spec.default!r})."
        ) from None
    if spec.choices and result is not None and result not in spec.choices:
        raise ConfigFieldError(f"'{spec.path}' must be one of {', '.join(map(str, spec.choices))}; got {value!r}.")
    return result


def _coerce(value: Any, spec: ConfigField) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if spec.optional and text.lower() in ("", "none", "null"):
            return None
        if spec.kind is bool:
            if text.lower() in _TRUE + _FALSE:
                return text.lower() in _TRUE
            raise ValueError(value)
        if spec.kind is int:
            number = float(text)
            if not number.is_integer():
                raise ValueError(value)
            return int(number)
        if spec.kind is float:
            return float(text)
        if spec.kind is tuple:
            items = json.loads(text) if text.startswith("[") else [p.strip() for p in text.split(",") if p.strip()]
            return tuple(_item(i, spec) for i in items)
        if spec.kind in (str, object):
            return value
        raise TypeError(value)
    if value is None:
        if spec.optional:
            return None
        raise TypeError(value)
    if spec.kind is bool:
        if isinstance(value, bool) or value in (0, 1):
            return bool(value)
        raise TypeError(value)
    if isinstance(value, bool) and spec.kind in (int, float):
        raise TypeError(value)  # True is an int to Python, but never a step count or a rate
    if spec.kind is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, int):
            return value
        raise TypeError(value)
    if spec.kind is float:
        if isinstance(value, (int, float)):
            return float(value)
        raise TypeError(value)
    if spec.kind is str:
        if isinstance(value, str):
            return value
        raise TypeError(value)
    if spec.kind is tuple:
        if isinstance(value, (list, tuple)):
            return tuple(_item(i, spec) for i in value)
        raise TypeError(value)
    return value


def _item(value: Any, spec: ConfigField) -> Any:
    if spec.item_kind is None:
        return value
    return _coerce(value, ConfigField(spec.path, spec.item_kind, None))


def set_field(config: Any, path: str, value: Any, owner: str = "") -> Any:
    """A copy of a (frozen, possibly nested) config with ``path`` set to ``value``, coerced
    strictly to the field's type. A nested config (``neurons``) can be replaced as a whole.
    ``owner`` (a method name) only makes error messages clearer."""
    return set_fields(config, {path: value}, owner)


def set_fields(config: Any, values: Mapping[str, Any], owner: str = "") -> Any:
    """``set_field`` for several paths at once: the config's own checks (``__post_init__``) see
    the final combination, never a half-changed one."""
    cls = type(config)
    nested = _nested(cls)
    coerced: dict[str, Any] = {}
    for path, value in values.items():
        if not has_field(cls, path):
            where = f" of {owner}'s config" if owner else ""
            known = ", ".join(f.path for f in config_fields(cls))
            raise ConfigFieldError(f"'{path}' is not a field{where} {cls.__name__}; fields: {known}.")
        if path in nested:
            current = _get(config, path)
            if not isinstance(value, type(current)):
                raise ConfigFieldError(f"'{path}' expects a {type(current).__name__}; got {value!r}.")
            coerced[path] = value
        else:
            coerced[path] = coerce(value, config_field(cls, path))
    return _replace_paths(config, coerced)


def _get(config: Any, path: str) -> Any:
    for name in path.split("."):
        config = getattr(config, name)
    return config


def _replace_paths(config: Any, values: Mapping[str, Any]) -> Any:
    top: dict[str, Any] = {}
    inner: dict[str, dict[str, Any]] = {}
    for path, value in values.items():
        head, _, rest = path.partition(".")
        if rest:
            inner.setdefault(head, {})[rest] = value
        else:
            top[head] = value
    for head, sub in inner.items():
        top[head] = _replace_paths(top.get(head, getattr(config, head)), sub)
    return replace(config, **top) if top else config


# --------------------------------------------------------------------------- methods


def changed_fields(config: Any, reference: Any) -> dict[str, Any]:
    """Top-level fields where ``config`` differs from ``reference``."""
    return {f.name: getattr(config, f.name) for f in fields(config) if getattr(config, f.name) != getattr(reference, f.name)}


@dataclass(frozen=True)
class MethodSpec:
    """Everything callers need to know about one editing method (see the module docstring)."""

    name: str
    title: str
    config_cls: type
    editor_cls: Callable[..., Any]
    description: str
    uses_neurons: bool = False
    uses_fact_pool: bool = False
    step_field: str | None = None
    variants: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, hash=False)
    """Label -> {field: value}; the first label names the method as it is (paper Table 5)."""
    batchable: bool = False
    """The editor edits k facts at once (``compute_batch``; see ``batch``)."""

    def __post_init__(self) -> None:
        where = f"MethodSpec '{self.name}'"
        if not (isinstance(self.config_cls, type) and is_dataclass(self.config_cls)):
            raise TypeError(f"{where}: config_cls must be a dataclass (got {self.config_cls!r}).")
        names = {f.name for f in fields(self.config_cls)}
        if self.uses_neurons and "neurons" not in names:
            raise TypeError(f"{where}: uses_neurons needs a 'neurons: NeuronConfig' field in {self.config_cls.__name__}.")
        if self.step_field is not None and not (
            has_field(self.config_cls, self.step_field) and config_field(self.config_cls, self.step_field).kind is int
        ):
            raise TypeError(f"{where}: step_field '{self.step_field}' must name an int field of {self.config_cls.__name__}.")
        for label, switches in self.variants.items():
            for path in switches:
                if not has_field(self.config_cls, path):
                    raise TypeError(f"{where}: variant '{label}' switches '{path}', no field of {self.config_cls.__name__}.")
        can_batch = callable(getattr(self.editor_cls, "compute_batch", None))
        if self.batchable != can_batch:
            editor = getattr(self.editor_cls, "__name__", repr(self.editor_cls))
            raise TypeError(
                f"{where}: batchable={self.batchable} but {editor} "
                + ("has no compute_batch(lm, batch, on_step)." if self.batchable else "has compute_batch; set batchable=True.")
            )

    def check_batchable(self) -> None:
        """Refuse a batch for a method that edits one fact at a time (``BatchNotSupportedError``
        naming the methods that can)."""
        if not self.batchable:
            raise batch_refusal(self.title)

    def resolve_path(self, path: str) -> str | None:
        """``edit_steps`` -> this method's step field (None if it has none); other paths unchanged."""
        if path == STEPS_ALIAS and not has_field(self.config_cls, path):
            return self.step_field
        return path

    def steps(self, config: Any) -> int | None:
        """The config's optimisation-step count, or None for methods without steps (IKE)."""
        return getattr(config, self.step_field) if self.step_field else None

    def neuron_config(self, config: Any):
        """The ``NeuronConfig`` to find this method's neurons with, or None if it uses none."""
        return config.neurons if self.uses_neurons else None

    def variant_label(self, text: str) -> str:
        """The variant ``text`` names, also in shell-friendly spellings (``wo-lsm``, ``no_lsm``
        for ``w/o LSM``); an unknown one is an error listing the variants."""
        wanted = _squash(text)
        for label in self.variants:
            if wanted in (_squash(label), _squash(label.replace("w/o", "no"))):
                return label
        choices = ", ".join(self.variants) or "none"
        example = f" (written e.g. '{_shell(list(self.variants)[-1])}')" if self.variants else ""
        raise ConfigFieldError(f"Unknown variant '{text}' of {self.name}; choose one of {choices}{example}.")

    def with_variant(self, config: Any, label: str) -> Any:
        """``config`` with the switches of the variant ``label`` (exactly as listed in ``variants``)."""
        if label not in self.variants:
            choices = ", ".join(self.variants) or "none"
            raise ConfigFieldError(f"{self.title} has no variant '{label}'; variants: {choices}.")
        for path, value in self.variants[label].items():
            config = set_field(config, path, value, owner=self.name)
        return config


def _squash(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def _shell(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", label.lower().replace("w/o", "wo")).strip("-")


def _memla_variants() -> dict[str, dict[str, Any]]:
    plain = MemlaConfig()
    return {label: changed_fields(MemlaConfig.ablation(label), plain) for label in ABLATIONS}


METHODS: dict[str, MethodSpec] = {
    "memla": MethodSpec(
        "memla", "MEMLA", MemlaConfig, MemlaEditor,
        "Neuron-masked LoRA on language-specific and language-independent knowledge neurons.",
        uses_neurons=True, step_field="max_steps", variants=_memla_variants(), batchable=True,
    ),
    "ft": MethodSpec(
        "ft", "FT-L", FTConfig, FTEditor,
        "Fine-tunes one MLP down projection on the edit prompt within an L∞ bound (Zhu et al. 2020).",
        step_field="steps", batchable=True,
    ),
    "rome": MethodSpec(
        "rome", "ROME", RomeConfig, RomeEditor,
        "Rank-one update of one MLP down projection at the subject's last token (Meng et al. 2022).",
        step_field="v_steps",
    ),
    "mend": MethodSpec(
        "mend", "MEND", MendConfig, MendEditor,
        "A hypernetwork trained once per model (`memla train-mend`) turns the edit prompt's gradient of the "
        "last MLPs into a weight update (Mitchell et al. 2022).",
    ),
    "memit": MethodSpec(
        "memit", "MEMIT", MemitConfig, MemitEditor,
        "The ROME update spread over a range of MLP layers (Meng et al. 2023).",
        step_field="v_steps", batchable=True,
    ),
    "pmet": MethodSpec(
        "pmet", "PMET", PmetConfig, PmetEditor,
        "MEMIT with the attention output optimised alongside the MLP output (Li et al. 2024).",
        step_field="v_steps", batchable=True,
    ),
    "ike": MethodSpec(
        "ike", "IKE", IkeConfig, IkeEditor,
        "In-context editing: the new fact and demonstrations before every prompt, no weight change (Zheng et al. 2023).",
        uses_fact_pool=True, batchable=True,
    ),
}


def method_spec(name: str | MethodSpec) -> MethodSpec:
    if isinstance(name, MethodSpec):
        return name
    key = name.lower()
    if key not in METHODS:
        raise ValueError(f"Unknown editing method '{name}'; available: {', '.join(METHODS)}.")
    return METHODS[key]


def default_config(method: str | MethodSpec, lm, preset: str = "paper", **overrides: Any) -> Any:
    """The typed config of ``method`` for ``lm``: class defaults, then ``overrides``, then the
    per-architecture table (``hparams``) for every field still ``None``, then the fields the
    ``preset`` changes for this model (``presets``: ``paper`` changes none)."""
    spec = method_spec(method)
    config = hparams.resolve(spec.config_cls(**overrides), spec.name, lm)
    tuned = presets.preset_values(spec.name, lm, preset)
    return set_fields(config, tuned, owner=spec.name) if tuned else config


def build_editor(method: str | MethodSpec, config: Any | None = None, neurons=None, pool=None):
    """The editor of ``method`` with ``config`` (default: the config class's defaults), given what
    its spec says it uses: precomputed ``neurons`` and a ``pool`` of facts. Callers may offer
    both; a method that does not use one never sees it."""
    spec = method_spec(method)
    config = spec.config_cls() if config is None else config
    if not isinstance(config, spec.config_cls):
        raise TypeError(f"{spec.title} needs a {spec.config_cls.__name__}, got {type(config).__name__}.")
    extras: dict[str, Any] = {}
    if spec.uses_neurons:
        extras["neurons"] = neurons
    if spec.uses_fact_pool and pool is not None:
        extras["pool"] = pool
    return spec.editor_cls(config, **extras)
