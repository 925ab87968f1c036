"""Arguments and helpers shared by subcommands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..data import MKEBDataset, load_bundled, load_mkeb
from ..data.schema import Fact
from ..models import DEFAULT_MODEL, LoadedModel, ModelSpec, load_model


def add_model_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--model", default=DEFAULT_MODEL, help=f"hub id, local folder, or '{DEFAULT_MODEL}' (default)")
    group.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:1 …")
    group.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    group.add_argument("--trust-remote-code", action="store_true", help="allow custom model code from the checkpoint")
    group.add_argument(
        "--allow-download", action="store_true",
        help="fetch a hub id that is not in the Hugging Face cache (default: fail at once; or MEMLA_ALLOW_DOWNLOAD=1)",
    )


STRICT_DATA_HELP = "reject a dataset where a record lacks a language in paraphrases or multi-hop questions (default: accept, PS/QS n/a there)"


def add_dataset_args(parser: argparse.ArgumentParser, strict_help: str = STRICT_DATA_HELP) -> None:
    parser.add_argument("--dataset", default="bundled", help="'bundled' (default) or an MKEB JSON file")
    parser.add_argument("--strict", action="store_true", help=strict_help)


def load_dataset_arg(value: str, strict: bool = False) -> MKEBDataset:
    """The dataset; what lenient loading accepted as missing is reported on stderr."""
    if value == "bundled":
        return load_bundled()
    dataset = load_mkeb(Path(value), strict=strict)
    for note in dataset.notes:
        print(f"memla: note: {note}", file=sys.stderr)
    return dataset


def parse_languages(value: str, fact_or_dataset: Fact | MKEBDataset) -> list[str]:
    available = list(fact_or_dataset.language_codes if isinstance(fact_or_dataset, Fact) else fact_or_dataset.languages)
    if value == "all":
        return available
    wanted = [code.strip() for code in value.split(",") if code.strip()]
    unknown = [code for code in wanted if code not in available]
    if unknown:
        raise ValueError(f"Language(s) {', '.join(unknown)} not available; choose from {', '.join(available)} or 'all'.")
    return wanted


def load_model_arg(args: argparse.Namespace) -> LoadedModel:
    from tqdm.auto import tqdm

    bar = tqdm(total=100, desc="model", unit="%", leave=False)

    def progress(stage: str, fraction: float) -> None:
        bar.set_description(stage[:60])
        bar.n = int(100 * fraction)
        bar.refresh()

    try:
        return load_model(
            ModelSpec(args.model, device=args.device, dtype=args.dtype, trust_remote_code=args.trust_remote_code,
                      allow_download=args.allow_download),
            progress=progress,
        )
    finally:
        bar.close()
