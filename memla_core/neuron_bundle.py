"""Shipped attributions: the default model's knowledge-neuron scores for the bundled facts.

A fact's first neuron search costs about a minute of integrated gradients on a laptop CPU (nine
prompts: edit prompt and paraphrases in en, zh and fr), the longest wait of a demo. For the
bundled facts on the default model memla ships those scores, compacted: per prompt, the neurons
whose score exceeds ``FLOOR`` of the prompt's maximum, as (layer, index, score / maximum) with
the ratio in float16, and the maximum in float32; every other neuron reads as 0.

``NeuronCache`` reads a bundle as a read-only layer under its on-disk files, by the same key, so
a neuron search on a bundled prompt costs no IG. Any threshold at or above ``FLOOR`` selects the
neurons the full scores select, up to float16 rounding of a ratio that lies within about 0.05% of
the threshold; the heatmaps show relative scores, where cells below ``FLOOR`` are near-white
anyway. Only the IG definition's multiplier (``difference``) under the default settings
(20 steps, eos baseline, down-projection input) is shipped; any other setting computes as before.

Rebuild (after a change to the IG code, the bundled facts or the default model):
``python -m memla_core.neuron_bundle --fresh`` (resumable: it fills the ordinary cache first;
``--cached-only`` packs the facts already computed, with no IG). Without ``--fresh`` it keeps
the shipped prompts and computes only facts the bundle lacks.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from .paths import ASSETS_DIR

BUNDLE_DIR = ASSETS_DIR / "neurons"
FLOOR = 0.02  # below the smallest threshold the sweeps try (0.05): their neuron sets stay exact


def bundle_path(model_key: str, folder: Path = BUNDLE_DIR) -> Path:
    return folder / f"{model_key}.npz"


@dataclass(frozen=True)
class NeuronBundle:
    """Compact attributions of many prompts, looked up by ``NeuronCache``'s key."""

    rows: dict[str, int]  # cache key -> prompt row
    offsets: np.ndarray  # [prompts + 1] start of each prompt's entries
    layer: np.ndarray  # [entries] uint16
    index: np.ndarray  # [entries] uint32
    ratio: np.ndarray  # [entries] float16, score / prompt maximum
    maximum: np.ndarray  # [prompts] float32
    shape: tuple[int, int]  # (layers, neurons)
    floor: float

    def __contains__(self, key: str) -> bool:
        return key in self.rows

    def __len__(self) -> int:
        return len(self.rows)

    def get(self, key: str) -> np.ndarray | None:
        """The prompt's [layers, neurons] scores (0 below the floor), or None if not shipped."""
        row = self.rows.get(key)
        if row is None:
            return None
        start, stop = int(self.offsets[row]), int(self.offsets[row + 1])
        scores = np.zeros(self.shape, dtype=np.float32)
        scores[self.layer[start:stop], self.index[start:stop]] = self.ratio[start:stop].astype(np.float32) * self.maximum[row]
        return scores

    @classmethod
    def read(cls, path: Path) -> "NeuronBundle":
        with np.load(path, allow_pickle=False) as data:
            keys = [str(k) for k in data["keys"]]
            return cls(
                rows={k: i for i, k in enumerate(keys)},
                offsets=data["offsets"],
                layer=data["layer"],
                index=data["index"],
                ratio=data["ratio"],
                maximum=data["maximum"],
                shape=tuple(int(x) for x in data["shape"]),
                floor=float(data["floor"]),
            )


def compact(scores: np.ndarray, floor: float = FLOOR) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(layers, indices, ratios, maximum) of the scores above ``floor`` of the maximum."""
    top = float(scores.max())
    if top <= 0:  # no neuron has positive attribution: nothing is ever selected
        empty = np.zeros(0)
        return empty.astype(np.uint16), empty.astype(np.uint32), empty.astype(np.float16), 0.0
    layers, index = np.nonzero(scores > floor * top)
    ratios = (scores[layers, index] / top).astype(np.float16)
    return layers.astype(np.uint16), index.astype(np.uint32), ratios, top


def write_bundle(entries: Iterable[tuple[str, np.ndarray]], path: Path, floor: float = FLOOR) -> int:
    """Write (key, scores) pairs as one compressed bundle; returns the number of prompts."""
    keys: list[str] = []
    seen: set[str] = set()
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    maxima: list[float] = []
    shape: tuple[int, ...] | None = None
    for key, scores in entries:
        if key in seen:  # a prompt shared by two facts is stored once
            continue
        seen.add(key)
        if shape is not None and scores.shape != shape:
            raise ValueError(f"Scores of {key} have shape {scores.shape}, the bundle's are {shape}.")
        shape = scores.shape
        layers, index, ratios, top = compact(scores, floor)
        keys.append(key)
        parts.append((layers, index, ratios))
        maxima.append(top)
    if shape is None:
        raise ValueError("No attributions to bundle.")
    offsets = np.cumsum([0] + [len(p[0]) for p in parts]).astype(np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(
        tmp,
        keys=np.array(keys),
        offsets=offsets,
        layer=np.concatenate([p[0] for p in parts]),
        index=np.concatenate([p[1] for p in parts]),
        ratio=np.concatenate([p[2] for p in parts]),
        maximum=np.array(maxima, dtype=np.float32),
        shape=np.array(shape),
        floor=np.array(floor),
    )
    tmp.replace(path)
    return len(keys)


@functools.lru_cache(maxsize=8)
def load_bundle(model_key: str, folder: Path = BUNDLE_DIR) -> NeuronBundle | None:
    """The shipped bundle of a model, or None where memla ships none for it."""
    path = bundle_path(model_key, folder)
    return NeuronBundle.read(path) if path.exists() else None


def main() -> None:  # pragma: no cover - maintainer's command, run by hand (about an hour on 2 cores)
    import argparse

    from .data.bundled import load_bundled
    from .models import load_model
    from .neurons import NeuronCache, NeuronConfig, cached_neurons, find_neurons

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default="en", help="edit language whose neuron search is shipped (default en)")
    parser.add_argument("--out", type=Path, help="bundle file (default assets/neurons/<model key>.npz)")
    parser.add_argument("--cached-only", action="store_true",
                        help="pack only the facts whose prompts are all in the disk cache or the bundle already (no IG)")
    parser.add_argument("--fresh", action="store_true",
                        help="ignore the shipped bundle: recompute every prompt not in the disk cache")
    args = parser.parse_args()
    lm = load_model()
    config = NeuronConfig()
    # Prompts already shipped are read back from the bundle (compacting them again keeps them as
    # they are), so a rebuild that adds facts computes only the new ones.
    cache = NeuronCache(lm, bundle=False if args.fresh else None)
    entries, facts = [], load_bundled()
    for fact in facts:
        if args.cached_only:
            sets = cached_neurons(lm, fact, args.source, config, cache=cache)
            if sets is None:
                continue
        else:
            sets = find_neurons(lm, fact, args.source, config, cache=cache)
        for att in sets.attributions:
            entries.append((cache.key(att.language, att.prompt, att.answer, config), att.scores))
        print(fact.example_id, flush=True)
    out = args.out or bundle_path(lm.key)
    count = write_bundle(entries, out)
    print(f"{count} prompts -> {out} ({out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":  # pragma: no cover
    main()
