"""What every editing method shares: the request, the computed edit, apply and revert.

An ``Edit`` is plain data (weight deltas and/or a context prefix). Applying it keeps a copy of
every touched weight so that ``revert`` restores the model bit for bit; a delta that is not
finite is refused before any weight is written (peft's ``safe_merge`` idea).
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Protocol

import torch

from ..data.schema import EditPrompt, Fact
from ..models import LoadedModel

log = logging.getLogger(__name__)

StepFn = Callable[[dict[str, float]], None]
"""Called after each optimisation step with ``{"step", "loss", "p_new", "p_true"}``."""


class EditError(RuntimeError):
    """An edit that cannot be computed; the model is left as it was."""


class EditDivergedError(EditError):
    """The optimisation produced NaN/inf; nothing was applied."""

    def __init__(self, message: str, trace: list[dict[str, float]]):
        super().__init__(message)
        self.trace = trace


@dataclass(frozen=True)
class EditRequest:
    """Edit ``fact`` as written in ``source_language``."""

    fact: Fact
    source_language: str

    @property
    def prompt(self) -> EditPrompt:
        return self.fact.in_language(self.source_language).edit


@dataclass
class Edit:
    """A computed edit: weight deltas (in each parameter's own layout) and/or a context prefix."""

    method: str
    fact_id: str
    source_language: str
    weight_deltas: dict[str, torch.Tensor] = field(default_factory=dict)
    context: str = ""  # text put before every prompt (in-context editing)
    trace: list[dict[str, float]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)  # method-specific (neurons, adapters …)

    @classmethod
    def for_request(cls, method: str, request: EditRequest, started: float, **fields: Any) -> "Edit":
        """An edit of ``request`` by ``method``; ``started`` is ``time.perf_counter()`` at the start."""
        return cls(
            method=method,
            fact_id=request.fact.example_id,
            source_language=request.source_language,
            seconds=time.perf_counter() - started,
            **fields,
        )

    def apply(self, lm: LoadedModel) -> "AppliedEdit":
        params = dict(lm.model.named_parameters())
        missing = [name for name in self.weight_deltas if name not in params]
        if missing:
            raise EditError(f"Edit touches parameters this model does not have: {missing[:3]}.")
        for name, delta in self.weight_deltas.items():
            if not torch.isfinite(delta).all():
                raise EditDivergedError(f"Edit delta for {name} is not finite; nothing was applied.", self.trace)
            if delta.shape != params[name].shape:
                raise EditError(f"Edit delta for {name} has shape {tuple(delta.shape)}, weight has {tuple(params[name].shape)}.")
        originals = {}
        with torch.no_grad():
            for name, delta in self.weight_deltas.items():
                weight = params[name]
                originals[name] = weight.detach().clone()
                weight.add_(delta.to(device=weight.device, dtype=weight.dtype))
        return AppliedEdit(self, lm, originals)

    @contextmanager
    def applied(self, lm: LoadedModel) -> Iterator["AppliedEdit"]:
        """``with edit.applied(lm): ...`` — the model is edited only inside the block."""
        handle = self.apply(lm)
        try:
            yield handle
        finally:
            handle.revert()

    @property
    def num_changed_weights(self) -> int:
        return int(sum((d != 0).sum().item() for d in self.weight_deltas.values()))


@dataclass
class AppliedEdit:
    edit: Edit
    lm: LoadedModel
    originals: dict[str, torch.Tensor]
    reverted: bool = False

    def revert(self) -> None:
        """Copy the saved weights back: the model is bit-for-bit what it was before ``apply``."""
        if self.reverted:
            return
        params = dict(self.lm.model.named_parameters())
        with torch.no_grad():
            for name, original in self.originals.items():
                params[name].copy_(original)
        self.reverted = True


class Editor(Protocol):
    """An editing method: computes an ``Edit`` for a request without changing the model."""

    name: str

    def compute(self, lm: LoadedModel, request: EditRequest, on_step: StepFn | None = None) -> Edit: ...
