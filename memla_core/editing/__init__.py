"""Editing methods behind one interface: compute an ``Edit``, apply it, revert it."""

from .base import AppliedEdit, BatchEditRequest, Edit, EditDivergedError, EditError, Editor, EditRequest
from .batch import BatchNotSupportedError, batchable_methods, compute_request
from .ft import FTConfig, FTEditor
from .hparams import FAMILY_DEFAULTS
from .ike import IkeConfig, IkeEditor
from .layer_stats import LayerStats, StatsConfig
from .memit import MemitConfig, MemitEditor
from .memla import ABLATIONS, MemlaConfig, MemlaEditor
from .pmet import PmetConfig, PmetEditor
from .rome import RomeConfig, RomeEditor
from .stack import EditStack
from .registry import (
    METHODS,
    ConfigField,
    ConfigFieldError,
    MethodSpec,
    build_editor,
    config_fields,
    default_config,
    method_spec,
)

__all__ = [
    "ABLATIONS",
    "AppliedEdit",
    "BatchEditRequest",
    "BatchNotSupportedError",
    "ConfigField",
    "ConfigFieldError",
    "Edit",
    "EditDivergedError",
    "EditError",
    "EditRequest",
    "EditStack",
    "Editor",
    "FAMILY_DEFAULTS",
    "FTConfig",
    "FTEditor",
    "IkeConfig",
    "IkeEditor",
    "LayerStats",
    "MemlaConfig",
    "MemlaEditor",
    "MemitConfig",
    "MemitEditor",
    "METHODS",
    "MethodSpec",
    "PmetConfig",
    "PmetEditor",
    "RomeConfig",
    "RomeEditor",
    "StatsConfig",
    "batchable_methods",
    "build_editor",
    "compute_request",
    "config_fields",
    "default_config",
    "method_spec",
]
