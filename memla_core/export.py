"""Export a MEMLA edit as a standard peft LoRA adapter (``adapter_model.safetensors`` +
``adapter_config.json``), loadable with ``PeftModel.from_pretrained(base_model, folder)``."""

from __future__ import annotations

import copy
import io
import tempfile
import zipfile
from pathlib import Path

from safetensors.torch import save_file

from .editing import Edit, EditError

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"


def has_adapter(edit: Edit) -> bool:
    return "lora_state" in edit.details and "lora_config" in edit.details


def save_adapter(edit: Edit, folder: str | Path, base_model: str = "") -> Path:
    """Write the edit's LoRA weights and config into ``folder``; returns the folder."""
    if not has_adapter(edit):
        raise EditError(
            f"The '{edit.method}' edit is not a LoRA adapter; only MEMLA edits can be exported "
            "for peft. Export the results table as CSV instead."
        )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = copy.deepcopy(edit.details["lora_config"])
    config.base_model_name_or_path = base_model or config.base_model_name_or_path
    config.save_pretrained(str(folder))
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in edit.details["lora_state"].items()}
    save_file(state, str(folder / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    return folder


def adapter_zip(edit: Edit, base_model: str = "") -> bytes:
    """The adapter folder as zip bytes (for a download button)."""
    with tempfile.TemporaryDirectory(prefix="memla-adapter-") as tmp:
        folder = save_adapter(edit, tmp, base_model)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
                archive.write(folder / name, arcname=name)
        return buffer.getvalue()
