"""memla: multilingual knowledge editing (MEMLA) and the MKEB evaluation.

The flat public API; each name lives in the module that holds its concept.
"""

from .architectures import ADAPTERS, ArchitectureAdapter, UnsupportedArchitectureError, adapter_for
from .data import DatasetError, Fact, MKEBDataset, load_bundled, load_mkeb
from .editing import METHODS, Edit, EditDivergedError, EditError, EditRequest, MemlaConfig, MemlaEditor
from .evaluation import EvalReport, evaluate
from .models import DEFAULT_MODEL, LoadedModel, ModelSpec, load_model
from .neurons import NeuronConfig, NeuronSets, find_neurons

__version__ = "0.1.0"

__all__ = [
    "ADAPTERS",
    "ArchitectureAdapter",
    "DEFAULT_MODEL",
    "DatasetError",
    "Edit",
    "EditDivergedError",
    "EditError",
    "EditRequest",
    "EvalReport",
    "Fact",
    "LoadedModel",
    "METHODS",
    "MKEBDataset",
    "MemlaConfig",
    "MemlaEditor",
    "ModelSpec",
    "NeuronConfig",
    "NeuronSets",
    "UnsupportedArchitectureError",
    "adapter_for",
    "evaluate",
    "find_neurons",
    "load_bundled",
    "load_mkeb",
    "load_model",
]
