"""Config fields: help that lives on the field, and values normalised before a config is built.

Forms, the CLI and the docs read a field's ``metadata["help"]`` and, where present,
``metadata["label"]`` (``editing.registry.config_fields``; ``app_support.forms`` titles a nested
config by its label). ``described`` writes exactly those keys, so every config states them the
same way. ``converted`` gives frozen configs what attrs calls converters (a list of languages
becomes a tuple, a method name its canonical spelling) without writing to a frozen instance.
This module lives outside ``editing`` because configs outside it use it too (``neurons``,
``bench``, ``ability``).
"""

from __future__ import annotations

import functools
from dataclasses import MISSING, field, fields
from typing import Any, Callable, TypeVar

T = TypeVar("T", bound=type)


def described(
    default: Any = MISSING, help: str = "", label: str = "", *, factory: Callable[[], Any] | None = None
) -> Any:
    """``field(default=…, metadata={"help": …, "label": …})``; ``factory`` instead of ``default``
    for mutable or nested defaults. The label is left out when not given (readers then derive one
    from the field's name)."""
    metadata = {"label": label, "help": help} if label else {"help": help}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def converted(**converters: Callable[[Any], Any]) -> Callable[[T], T]:
    """Class decorator for a frozen dataclass (put it above ``@dataclass``): each named argument
    passes through its converter, in the order given, before the dataclass's own ``__init__``
    sets the fields; ``__post_init__`` then sees the final values and only checks them. Defaults
    are not converted (write them in their final form), and ``dataclasses.replace`` converts
    again, so converters must accept their own output."""

    def decorate(cls: T) -> T:
        init = cls.__init__
        # The dataclass's own __init__ takes its init fields in this order, positionally or by name
        # (keyword-only fields by name only).
        accepted = [f for f in fields(cls) if f.init]
        names = {f.name for f in accepted}
        position = {f.name: i for i, f in enumerate(f for f in accepted if not f.kw_only)}
        required = {f.name for f in accepted if f.default is MISSING and f.default_factory is MISSING}
        unknown = sorted(set(converters) - names)
        if unknown:
            raise TypeError(f"converted: {cls.__name__} has no init field {', '.join(unknown)}.")

        @functools.wraps(init)
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            given = {name for name, i in position.items() if i < len(args)}
            fits = len(args) <= len(position) and kwargs.keys() <= names - given
            if not (fits and required <= given | kwargs.keys()):
                init(self, *args, **kwargs)  # the dataclass refuses them itself, before any conversion
                return
            args = list(args)
            for name, convert in converters.items():
                if name in kwargs:
                    kwargs[name] = convert(kwargs[name])
                elif name in given:
                    args[position[name]] = convert(args[position[name]])
            init(self, *args, **kwargs)

        cls.__init__ = __init__
        return cls

    return decorate


def optional(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``convert`` for a field that may be ``None`` (kept as it is)."""
    return lambda value: None if value is None else convert(value)
