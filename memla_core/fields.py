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
import inspect
from dataclasses import MISSING, field
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
        signature = inspect.signature(init)

        @functools.wraps(init)
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            given = signature.bind(self, *args, **kwargs)  # a wrong argument fails as it would without us
            for name, convert in converters.items():
                if name in given.arguments:
                    given.arguments[name] = convert(given.arguments[name])
            init(*given.args, **given.kwargs)

        cls.__init__ = __init__
        return cls

    return decorate


def optional(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``convert`` for a field that may be ``None`` (kept as it is)."""
    return lambda value: None if value is None else convert(value)
