"""Process-wide resources: the shared model and cached, serialisable results.

The model is loaded once per (model, dtype, device) and shared by every session. Only unedited
results are cached here (``before_report``, ``unedited_health_reference``, ``unedited_ability``); an edited model or an edit
never is.
"""

from __future__ import annotations

import io
import json
import tempfile
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import streamlit as st

from memla_core.ability import (
    AbilityConfig,
    AbilityReport,
    DriftReference,
    ProbeSet,
    load_bundled_probe,
    load_sentences,
    measure_unedited,
)
from memla_core.data import MKEBDataset, fact_to_record, load_mkeb
from memla_core.data.schema import Fact
from memla_core.evaluation import EvalReport
from memla_core.models import LoadedModel, ModelSpec, Progress, load_model
from memla_core.health import HealthReference
from memla_core.session import edited, evaluate_fact, health_reference
from memla_core.views import paper_table

UPLOAD_FORMATS = {
    "MKEB JSON (the authors' layout)": "mkeb",
    "MzsRE JSON (12-language zsRE)": "mzsre",
    "CounterFact JSON": "counterfact",
    "MLaKE folder, zipped": "mlake",
}


@dataclass
class ModelSlot:
    """Holds one loaded model; loading happens outside the cached function so it can report progress."""

    model: LoadedModel | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


@st.cache_resource(show_spinner=False)
def _model_slot(name_or_path: str, dtype: str, device: str, trust_remote_code: bool) -> ModelSlot:
    # Keyed by model id, dtype and device: one slot (and one model) per combination per process.
    return ModelSlot()


def get_model(spec: ModelSpec, progress: Progress | None = None) -> LoadedModel:
    """The shared model for ``spec``, loading it the first time (other sessions wait for it)."""
    slot = _model_slot(spec.name_or_path, spec.dtype, spec.device, spec.trust_remote_code)
    with slot.lock:
        if slot.model is None:
            slot.model = load_model(spec, progress=progress)
    return slot.model


def is_loaded(spec: ModelSpec) -> bool:
    return _model_slot(spec.name_or_path, spec.dtype, spec.device, spec.trust_remote_code).model is not None


@st.cache_data(show_spinner=False, max_entries=8)
def read_uploaded_dataset(fmt: str, filename: str, content: bytes) -> MKEBDataset:
    """An uploaded file (or zipped folder for MLaKE) as a validated MKEB dataset."""
    if fmt == "mkeb":
        source = io.BytesIO(content)
        source.name = filename
        return load_mkeb(source, name=filename)
    from memla_core.data.importers import import_dataset

    with tempfile.TemporaryDirectory(prefix="memla-upload-") as tmp:
        path = Path(tmp) / Path(filename).name
        path.write_bytes(content)
        if fmt == "mlake":
            if not zipfile.is_zipfile(path):
                raise ValueError("For MLaKE upload the dataset folder as a .zip file (single_hop/, multi_hop/).")
            folder = Path(tmp) / "mlake"
            with zipfile.ZipFile(path) as archive:
                archive.extractall(folder)
            return import_dataset(fmt, folder)
        return import_dataset(fmt, path)


@st.cache_data(show_spinner=False, max_entries=256)
def _before(
    model_key: str, device: str, fact_json: str, languages: tuple[str, ...], source_language: str,
    _lm: LoadedModel, _fact: Fact,
) -> EvalReport:
    # Keyed by model, device and the fact's full content (not just its id: uploads may reuse ids).
    return evaluate_fact(_lm, _fact, list(languages), source_language=source_language)


def _fact_json(fact: Fact) -> str:
    return json.dumps(fact_to_record(fact), ensure_ascii=False, sort_keys=True)


def before_report(lm: LoadedModel, fact: Fact, languages: list[str], source_language: str, progress=None) -> EvalReport:
    """Scores of the unedited model, cached per (fact, languages) across sessions. Progress is
    reported around the cached call: page elements drawn inside it could not be replayed."""
    if progress:
        progress(0, len(languages), ", ".join(languages))
    report = _before(lm.key, str(lm.device), _fact_json(fact), tuple(languages), source_language, lm, fact)
    if progress:
        progress(len(languages), len(languages), "done")
    return report


@st.cache_resource(show_spinner=False, max_entries=2)
def _ordinary_reference(model_key: str, device: str, _lm: LoadedModel) -> HealthReference:
    # The ordinary sentences' full distributions (~100 MB on a 262k vocabulary): once per model.
    return health_reference(_lm, None, [])


@st.cache_resource(show_spinner=False, max_entries=64)
def _fact_reference(
    model_key: str, device: str, fact_json: str, languages: tuple[str, ...], _lm: LoadedModel, _fact: Fact
) -> HealthReference:
    base = _ordinary_reference(model_key, device, _lm)
    return health_reference(_lm, _fact, list(languages), base=base)


def unedited_health_reference(lm: LoadedModel, fact: Fact, languages: list[str]) -> HealthReference:
    """The health check's reference on the unedited model, cached across sessions (an edit's
    check then costs only the edited model's pass)."""
    return _fact_reference(lm.key, str(lm.device), _fact_json(fact), tuple(languages), lm, fact)


def ability_config(full: bool) -> AbilityConfig:
    """The general-ability probe the Edit page runs: the whole probe, or the quick one (≤ 30 s a
    model state on the default model, 2-core CPU)."""
    return AbilityConfig() if full else AbilityConfig.quick()


@st.cache_resource(show_spinner=False)
def bundled_probe() -> ProbeSet:
    return load_bundled_probe()


@st.cache_resource(show_spinner=False, max_entries=8)
def _unedited_ability(model_key: str, device: str, full: bool, _lm: LoadedModel) -> tuple[AbilityReport, DriftReference]:
    # Keyed by model, device and probe size; the weights are unedited under edited(lm, None).
    with edited(_lm, None):
        return measure_unedited(_lm, bundled_probe(), load_sentences(), ability_config(full))


def unedited_ability(lm: LoadedModel, full: bool) -> tuple[AbilityReport, DriftReference]:
    """The unedited model's probe report and drift reference, measured once per model and shared."""
    return _unedited_ability(lm.key, str(lm.device), full, lm)


@st.cache_data(show_spinner=False)
def paper(name: str) -> pd.DataFrame:
    return paper_table(name)
