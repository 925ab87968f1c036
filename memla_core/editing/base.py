"""What every editing method shares: the request, the computed edit, apply and revert.

An ``Edit`` is plain data (weight deltas and/or a context prefix). Applying it keeps a copy of
every touched weight so that ``revert`` restores the model bit for bit; a delta that is not
finite is refused before any weight is written (peft's ``safe_merge`` idea).
"""

from __future__ import annotations

import abc
import logging
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator, Protocol

import torch

from ..data.schema import EditPrompt, Fact
from ..fields import converted
from ..models import LoadedModel
from .hparams import resolve

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

    @property
    def fact_id(self) -> str:
        return self.fact.example_id

    @property
    def fact_ids(self) -> tuple[str, ...]:
        return (self.fact_id,)

    @property
    def requests(self) -> tuple["EditRequest", ...]:
        """The single-fact requests this request is made of: itself (a batch has one per fact)."""
        return (self,)


@converted(facts=tuple)  # a list is accepted and kept as a tuple
@dataclass(frozen=True)
class BatchEditRequest:
    """Edit all ``facts`` at once, each as written in ``source_language``: one ``Edit`` that
    changes k facts (``compute_batch`` of the methods whose registry entry is ``batchable``)."""

    facts: tuple[Fact, ...]
    source_language: str

    def __post_init__(self) -> None:
        if not self.facts:
            raise ValueError("BatchEditRequest.facts is empty; a batch needs at least one fact.")
        ids = [f.example_id for f in self.facts]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise ValueError(f"BatchEditRequest.facts names '{repeated[0]}' more than once; give each fact once.")
        for fact in self.facts:
            fact.in_language(self.source_language)  # names the fact and the languages it has

    @property
    def fact_ids(self) -> tuple[str, ...]:
        return tuple(f.example_id for f in self.facts)

    @property
    def fact_id(self) -> str:
        """The facts' ids joined with "+" (an ``Edit``'s ``fact_id``; ``Edit.fact_ids`` lists them)."""
        return "+".join(self.fact_ids)

    @property
    def requests(self) -> tuple[EditRequest, ...]:
        return tuple(EditRequest(f, self.source_language) for f in self.facts)

    def __len__(self) -> int:
        return len(self.facts)


@dataclass
class Edit:
    """A computed edit: weight deltas (in each parameter's own layout) and/or a context prefix."""

    method: str
    fact_id: str  # a batch edit's facts joined with "+" (``fact_ids`` lists them)
    source_language: str
    weight_deltas: dict[str, torch.Tensor] = field(default_factory=dict)
    context: str = ""  # text put before every prompt (in-context editing)
    trace: list[dict[str, float]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)  # method-specific (neurons, adapters …)
    context_query: str = ""
    """The end of ``context`` that introduces the prompt (IKE's "Prompt: "): stacked in-context
    edits keep it once, after the last context (``stack.stacked_context``)."""

    @classmethod
    def for_request(
        cls, method: str, request: EditRequest | BatchEditRequest, started: float, **fields: Any
    ) -> "Edit":
        """An edit of ``request`` (one fact or a batch) by ``method``; ``started`` is
        ``time.perf_counter()`` at the start."""
        if len(request.requests) > 1:
            fields["details"] = {"fact_ids": list(request.fact_ids), **fields.get("details", {})}
        return cls(
            method=method,
            fact_id=request.fact_id,
            source_language=request.source_language,
            seconds=time.perf_counter() - started,
            **fields,
        )

    @property
    def fact_ids(self) -> tuple[str, ...]:
        """The facts this edit changes: its one fact, or every fact of a batch."""
        return tuple(self.details.get("fact_ids", (self.fact_id,)))

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


WeightEdit = tuple[dict[str, torch.Tensor], list[dict[str, float]], dict[str, Any]]
"""What a weight-editing method computes: the deltas, the optimisation trace, its own details."""


class ConfiguredEditor(abc.ABC):
    """An editor built from its config alone (FT-L, ROME, MEND, MEMIT, PMET): ``editor_cls(config)``,
    the config class's defaults when none is given. ``compute`` fills the config's ``None`` fields
    for the model's architecture (``hparams``), runs the method's ``edit_weights`` and records the
    config and time with the edit. A method that batches offers ``compute_batch`` as ``compute``.
    A subclass without ``edit_weights`` cannot be instantiated."""

    name: str
    config_cls: type

    def __init__(self, config: Any | None = None):
        self.config = config or self.config_cls()

    def compute(
        self, lm: LoadedModel, request: EditRequest | BatchEditRequest, on_step: StepFn | None = None
    ) -> Edit:
        start = time.perf_counter()
        cfg = resolve(self.config, self.name, lm)
        weight_deltas, trace, details = self.edit_weights(lm, request, cfg, on_step)
        return Edit.for_request(
            self.name, request, start, weight_deltas=weight_deltas, trace=trace, config=asdict(cfg), details=details
        )

    @abc.abstractmethod
    def edit_weights(
        self, lm: LoadedModel, request: EditRequest | BatchEditRequest, cfg: Any, on_step: StepFn | None
    ) -> WeightEdit:
        """The method itself: weight deltas for ``request`` under the resolved config ``cfg``."""
