"""Editing methods behind one interface: compute an ``Edit``, apply it, revert it."""

from .base import AppliedEdit, Edit, EditDivergedError, EditError, Editor, EditRequest
from .ft import FTConfig, FTEditor
from .hparams import FAMILY_DEFAULTS
from .ike import IkeConfig, IkeEditor
from .layer_stats import LayerStats, StatsConfig
from .memit import MemitConfig, MemitEditor
from .memla import ABLATIONS, MemlaConfig, MemlaEditor
from .pmet import PmetConfig, PmetEditor
from .rome import RomeConfig, RomeEditor
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
    "ConfigField",
    "ConfigFieldError",
    "Edit",
    "EditDivergedError",
    "EditError",
    "EditRequest",
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
    "build_editor",
    "config_fields",
    "default_config",
    "method_spec",
]
