"""Editing methods behind one interface: compute an ``Edit``, apply it, revert it."""

from .base import AppliedEdit, Edit, EditDivergedError, EditError, Editor, EditRequest
from .memla import ABLATIONS, MemlaConfig, MemlaEditor
from .registry import METHODS, MethodSpec, method_spec

__all__ = [
    "ABLATIONS",
    "AppliedEdit",
    "Edit",
    "EditDivergedError",
    "EditError",
    "EditRequest",
    "Editor",
    "MemlaConfig",
    "MemlaEditor",
    "METHODS",
    "MethodSpec",
    "method_spec",
]
