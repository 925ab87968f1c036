"""Export a MEMLA edit as a standard peft LoRA adapter (``adapter_model.safetensors`` +
``adapter_config.json`` + a README), loadable with ``PeftModel.from_pretrained(base_model, folder)``.

The config names the base model portably (a hub id, or ``gemma3-270m`` for the embedded default),
never a path that exists only on the exporting machine."""

from __future__ import annotations

import copy
import io
import tempfile
import zipfile
from pathlib import Path

from safetensors.torch import save_file

from .editing import Edit, EditError
from .models import DEFAULT_MODEL, LoadedModel

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_README = "README.md"


def portable_base_model(lm: LoadedModel) -> str:
    """The base model as another machine can name it: ``gemma3-270m``, a hub id, or, for a local
    folder, the folder's name (only its owner knows where the weights came from)."""
    name = lm.spec.name_or_path
    if name == DEFAULT_MODEL or not Path(name).expanduser().exists():
        return name
    return Path(name).expanduser().resolve().name


def adapter_readme(edit: Edit, base_model: str) -> str:
    """How to load the adapter with peft, for the base model it was made on."""
    if base_model == DEFAULT_MODEL:
        load_base = (
            "# Gemma 3 270M as embedded in memla (this project), which the edit was made on\n"
            "from memla_core.models import load_model\n"
            'base = load_model("gemma3-270m").model'
        )
    else:
        load_base = (
            "from transformers import AutoModelForCausalLM\n"
            f'base = AutoModelForCausalLM.from_pretrained("{base_model}")  # or your local copy of it'
        )
    return f"""# MEMLA edit of `{edit.fact_id}` ({edit.source_language}) as a peft LoRA adapter

Base model: `{base_model}`. The adapter changes only the MLP down-projection rows of the knowledge
neurons MEMLA found; merging it gives the edited weights.

```python
from peft import PeftModel
{load_base}
edited = PeftModel.from_pretrained(base, "path/to/this/folder")
edited = edited.merge_and_unload()  # optional: plain weights with the edit written in
```

Files: `{ADAPTER_CONFIG}` (peft LoRA config), `{ADAPTER_WEIGHTS}` (the weights).
"""


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
    (folder / ADAPTER_README).write_text(adapter_readme(edit, config.base_model_name_or_path or ""), encoding="utf-8")
    return folder


def adapter_zip(edit: Edit, base_model: str = "") -> bytes:
    """The adapter folder as zip bytes (for a download button)."""
    with tempfile.TemporaryDirectory(prefix="memla-adapter-") as tmp:
        folder = save_adapter(edit, tmp, base_model)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS, ADAPTER_README):
                archive.write(folder / name, arcname=name)
        return buffer.getvalue()
