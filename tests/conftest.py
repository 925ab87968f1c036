"""Tiny randomly initialised models of several architectures, saved as local checkpoints and
loaded through memla's real loading code. Nothing here reaches the network."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    BloomConfig,
    Gemma3TextConfig,
    GPT2Config,
    GPTJConfig,
    GPTNeoXConfig,
    LlamaConfig,
    OPTConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
    XGLMConfig,
)

from memla_core.data import load_bundled
from memla_core.models import LoadedModel, load_model

torch.set_num_threads(min(2, os.cpu_count() or 1))

SMALL = dict(hidden=32, inter=64, layers=2, heads=2)


def _configs(vocab: int, bos: int, eos: int, pad: int) -> dict[str, object]:
    h, f, n, a = SMALL["hidden"], SMALL["inter"], SMALL["layers"], SMALL["heads"]
    ids = dict(bos_token_id=bos, eos_token_id=eos, pad_token_id=pad)
    return {
        "gpt2": GPT2Config(vocab_size=vocab, n_embd=h, n_layer=n, n_head=a, n_inner=f, n_positions=256, **ids),
        "llama": LlamaConfig(vocab_size=vocab, hidden_size=h, intermediate_size=f, num_hidden_layers=n,
                             num_attention_heads=a, num_key_value_heads=1, max_position_embeddings=256, **ids),
        "gemma3_text": Gemma3TextConfig(vocab_size=vocab, hidden_size=h, intermediate_size=f, num_hidden_layers=n,
                                        num_attention_heads=a, num_key_value_heads=1, head_dim=16,
                                        max_position_embeddings=256, sliding_window=8, **ids),
        "qwen2": Qwen2Config(vocab_size=vocab, hidden_size=h, intermediate_size=f, num_hidden_layers=n,
                             num_attention_heads=a, num_key_value_heads=1, max_position_embeddings=256, **ids),
        "bloom": BloomConfig(vocab_size=vocab, hidden_size=h, n_layer=n, n_head=a, **ids),
        "gpt_neox": GPTNeoXConfig(vocab_size=vocab, hidden_size=h, intermediate_size=f, num_hidden_layers=n,
                                  num_attention_heads=a, max_position_embeddings=256, **ids),
        "opt": OPTConfig(vocab_size=vocab, hidden_size=h, ffn_dim=f, num_hidden_layers=n, num_attention_heads=a,
                         word_embed_proj_dim=h, max_position_embeddings=256, **ids),
        "xglm": XGLMConfig(vocab_size=vocab, d_model=h, ffn_dim=f, num_layers=n, attention_heads=a,
                           max_position_embeddings=256, **ids),
        "gptj": GPTJConfig(vocab_size=vocab, n_embd=h, n_layer=n, n_head=a, n_inner=f, rotary_dim=8,
                           n_positions=256, **ids),
    }


ARCHITECTURES = ("gpt2", "llama", "gemma3_text", "qwen2", "bloom", "gpt_neox", "opt", "xglm", "gptj")


def snapshot(lm: LoadedModel) -> dict[str, torch.Tensor]:
    """A copy of every weight and buffer of ``lm``, for ``changed_since``."""
    return {k: v.detach().clone() for k, v in lm.model.state_dict().items()}


def changed_since(lm: LoadedModel, before: dict[str, torch.Tensor]) -> list[str]:
    """Names of the tensors that differ from ``before`` bit for bit, appeared or disappeared."""
    after = lm.model.state_dict()
    return sorted(set(before) ^ set(after)) + [k for k in before if k in after and not torch.equal(before[k], after[k])]


def _corpus() -> list[str]:
    texts = []
    for fact in load_bundled().facts[:12]:
        for block in fact.languages.values():
            e = block.edit
            texts += [e.filled(), e.target_new, e.target_true or "", *block.paraphrase_prompts,
                      *block.neighborhood_prompts, *block.neighborhood_answers, *block.multi_hop_questions]
    return texts


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory) -> Path:
    """A byte-level BPE tokenizer trained on bundled prompts: every script encodes."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=["<pad>", "<bos>", "<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_corpus(), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>")
    path = tmp_path_factory.mktemp("tokenizer")
    fast.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory, tiny_tokenizer) -> dict[str, Path]:
    tok = PreTrainedTokenizerFast.from_pretrained(tiny_tokenizer)
    configs = _configs(len(tok), tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)
    paths = {}
    for name in ARCHITECTURES:
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(configs[name])
        path = tmp_path_factory.mktemp(f"tiny-{name}")
        model.save_pretrained(path)
        tok.save_pretrained(path)
        paths[name] = path
    return paths


@pytest.fixture(scope="session")
def tiny_models(tiny_checkpoints) -> dict[str, LoadedModel]:
    return {name: load_model(str(path)) for name, path in tiny_checkpoints.items()}


@pytest.fixture(params=ARCHITECTURES)
def tiny_lm(request, tiny_models) -> LoadedModel:
    return tiny_models[request.param]


@pytest.fixture(scope="session")
def bundled():
    return load_bundled()


@pytest.fixture
def app(tiny_checkpoints, monkeypatch):
    """The Streamlit app (an AppTest) on the tiny Gemma-3 checkpoint, after a first run without
    errors; a test file that needs another start defines its own ``app``."""
    from app_helpers import _no_errors, open_app  # streamlit only for the tests that use the app

    at = open_app(monkeypatch, tiny_checkpoints["gemma3_text"])
    _no_errors(at)
    return at


@pytest.fixture(autouse=True)
def _isolated_cache(request, tmp_path, monkeypatch):
    """Unit tests get a private MEMLA_CACHE; integration tests use the real one (CI points it
    at a fresh folder, so the default model's one-time conversion is exercised there)."""
    if request.node.get_closest_marker("integration") is None:
        monkeypatch.setenv("MEMLA_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def one_thread():
    """Tiny matrices gain nothing from threads, and on a busy machine every OpenMP hand-off
    waits for a time slice (15 s instead of 1 s for an FT-L edit). Modules of many small edits
    use it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)

