"""Read and change module inputs and outputs during a forward pass: the one place memla hooks a model.

The idea is ROME's ``TraceDict`` (``util/nethook.py``): a context manager given module names
(from the architecture adapter, e.g. ``adapter.down_proj_name(l)``) that keeps what each named
module received or returned, optionally replaces it, and removes every hook on exit, also when
the forward pass raises. Two differences:

- ``rows``: when given, every tensor a patch sees and the trace keeps is ``[rows, positions, d]``.
  Some models (OPT) flatten the MLP's input to ``[rows·positions, d]``; this is undone here and
  nowhere else, and a patched tensor is put back in the module's own shape.
- a module returning a tuple (decoder blocks) is read and patched through its first element,
  the hidden states.

Kept tensors are references, not copies: they hold autograd history when the forward pass
does, so a caller can differentiate through them or ``detach()`` them.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

Patch = Callable[[str, torch.Tensor], "torch.Tensor | None"]
"""``patch(name, x) -> replacement`` (same shape as ``x``) or ``None`` to leave ``x`` as it is."""


class StopForward(Exception):
    """Raised after ``stop_after`` has run, so later layers are skipped; ``trace`` swallows it."""


@dataclass
class Traced:
    """What the named modules received (``inputs``) and returned (``outputs``), after any patch."""

    inputs: dict[str, torch.Tensor] = field(default_factory=dict)
    outputs: dict[str, torch.Tensor] = field(default_factory=dict)


def as_rows(tensor: torch.Tensor, rows: int | None) -> torch.Tensor:
    """``tensor`` as ``[rows, positions, d]`` (OPT flattens the first two inside its MLP)."""
    return tensor if rows is None else tensor.reshape(rows, -1, tensor.shape[-1])


@contextmanager
def trace(
    model: nn.Module,
    inputs: Sequence[str] = (),
    outputs: Sequence[str] = (),
    *,
    rows: int | None = None,
    patch_input: Patch | None = None,
    patch_output: Patch | None = None,
    stop_after: str | None = None,
) -> Iterator[Traced]:
    """Hook the modules named in ``inputs`` (their first positional argument) and ``outputs``.

    ``patch_input``/``patch_output`` may replace what they are given; ``stop_after`` (one of
    ``outputs``) ends the forward pass once that module has run. Usage::

        with trace(lm.model, inputs=[name], rows=n) as seen:
            lm.model(...)
        key = seen.inputs[name]
    """
    if stop_after is not None and stop_after not in outputs:
        raise ValueError(f"stop_after='{stop_after}' must be one of the traced outputs {list(outputs)}.")
    traced = Traced()

    def apply(name: str, tensor: torch.Tensor, patch: Patch | None, kept: dict[str, torch.Tensor]) -> torch.Tensor | None:
        seen = as_rows(tensor, rows)
        new = patch(name, seen) if patch is not None else None
        kept[name] = seen if new is None else new
        return None if new is None or new is seen else new.reshape(tensor.shape)

    def input_hook(name: str):
        def hook(_module, args):
            if not args:
                raise TypeError(f"Module '{name}' was called without a positional input, so it cannot be traced.")
            new = apply(name, args[0], patch_input, traced.inputs)
            return None if new is None else (new, *args[1:])

        return hook

    def output_hook(name: str):
        def hook(_module, _args, output):
            hidden = output[0] if isinstance(output, tuple) else output
            new = apply(name, hidden, patch_output, traced.outputs)
            if name == stop_after:
                raise StopForward
            if new is None:
                return None
            return (new, *output[1:]) if isinstance(output, tuple) else new

        return hook

    handles = []
    try:
        for name in inputs:
            handles.append(model.get_submodule(name).register_forward_pre_hook(input_hook(name)))
        for name in outputs:
            handles.append(model.get_submodule(name).register_forward_hook(output_hook(name)))
        try:
            yield traced
        except StopForward:
            pass
    finally:
        for handle in handles:
            handle.remove()


def contiguous_inputs(module: nn.Module) -> torch.utils.hooks.RemovableHandle:
    """Give ``module`` contiguous inputs from now on (a permanent hook; returns its handle).

    For the LM head. ``generate`` hands it ``hidden[:, -1:, :]``, a strided view, and on the CPU
    ``F.linear`` of a strided view against a 262k-row vocabulary takes the slow path: 3.0-3.4 s
    instead of 0.4-0.6 s for 32 rows on Gemma 3 270M (measured 2026-12-02). A copy of a few rows
    costs nothing next to that, and the values are the same."""

    def hook(_module, args):
        if args and isinstance(args[0], torch.Tensor) and not args[0].is_contiguous():
            return (args[0].contiguous(), *args[1:])
        return None

    return module.register_forward_pre_hook(hook)

