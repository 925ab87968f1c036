"""MKEB data: schema, loading/validation, the bundled dataset, importers."""

from .loader import DatasetError, MKEBDataset, fact_to_record, load_mkeb
from .schema import (
    LANGUAGE_NAMES,
    MKEB_LANGUAGES,
    UNSPACED_LANGUAGES,
    EditPrompt,
    Fact,
    FactInLanguage,
    FactNotFoundError,
    MissingLanguageError,
)
from .bundled import BUNDLED_DATASET_PATH, load_bundled

__all__ = [
    "BUNDLED_DATASET_PATH",
    "DatasetError",
    "EditPrompt",
    "Fact",
    "FactInLanguage",
    "LANGUAGE_NAMES",
    "MKEBDataset",
    "MKEB_LANGUAGES",
    "FactNotFoundError",
    "MissingLanguageError",
    "UNSPACED_LANGUAGES",
    "fact_to_record",
    "load_bundled",
    "load_mkeb",
]
