"""The adapter table and the per-family defaults agree: every architecture memla accepts can run
every method with its defaults, or says exactly which table entry is missing."""

from __future__ import annotations

from dataclasses import fields
from types import SimpleNamespace

import pytest

from memla_core.architectures import ADAPTERS, ArchitectureAdapter
from memla_core.editing import hparams
from memla_core.editing.registry import METHODS

FAMILIES = sorted({adapter.family for adapter in ADAPTERS.values()})


def fake_lm(adapter: ArchitectureAdapter, num_layers: int = 24) -> SimpleNamespace:
    """What ``hparams.resolve`` reads of a loaded model: its adapter and its depth."""
    return SimpleNamespace(adapter=adapter, num_layers=num_layers)


def table_filled_methods() -> list[str]:
    """Methods whose default config leaves fields to ``hparams`` (``None``)."""
    return [name for name, spec in METHODS.items() if any(f.default is None for f in fields(spec.config_cls))]


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_has_the_defaults_every_method_needs(family):
    adapter = next(a for a in ADAPTERS.values() if a.family == family)
    assert table_filled_methods(), "no method reads hparams: this test would check nothing"
    for method in table_filled_methods():
        config = hparams.resolve(METHODS[method].config_cls(), method, fake_lm(adapter))
        unset = [f.name for f in fields(config) if getattr(config, f.name) is None]
        assert not unset, f"{method} on {family}: {unset} not filled; add them to FAMILY_DEFAULTS['{family}']"
        for name in hparams.LAYER_FIELDS:
            value = getattr(config, name, None)
            layers = value if isinstance(value, tuple) else () if value is None else (value,)
            assert all(0 <= layer < 24 for layer in layers), f"{method}.{name} on {family}: {value}"


def test_a_family_without_entries_names_the_table():
    adapter = ArchitectureAdapter("newfam", "model.layers", "mlp.down_proj", "self_attn.o_proj", "out_in")
    with pytest.raises(KeyError, match=r"FAMILY_DEFAULTS.*newfam|newfam.*FAMILY_DEFAULTS"):
        hparams.resolve(METHODS["rome"].config_cls(), "rome", fake_lm(adapter))


def test_a_missing_field_names_the_entry_to_add(monkeypatch):
    adapter = ADAPTERS["gpt2"]
    monkeypatch.setitem(hparams.FAMILY_DEFAULTS, "gpt2", {**hparams.FAMILY_DEFAULTS["gpt2"], "memit": {}})
    with pytest.raises(ValueError, match=r"FAMILY_DEFAULTS\['gpt2'\]\['memit'\]") as error:
        hparams.resolve(METHODS["memit"].config_cls(), "memit", fake_lm(adapter))
    assert "layers" in str(error.value)
