import pytest
import torch
from torch import nn

from memla_core.architectures import UnsupportedArchitectureError, adapter_for
from memla_core.models import ModelLoadError, ModelSpec, load_model
from memla_core.scoring import answer_logprobs, encode_completion, greedy_generate, joiner


def test_every_tiny_architecture_has_an_adapter(tiny_lm):
    adapter = tiny_lm.adapter
    assert tiny_lm.num_layers == 2
    assert tiny_lm.num_neurons in (64, 128)  # BLOOM's MLP is always 4 × hidden
    weight = adapter.down_proj_module(tiny_lm.model, 1).weight
    assert adapter.as_out_in(weight).shape == (32, tiny_lm.num_neurons)
    assert all(not p.requires_grad for p in tiny_lm.model.parameters())


def test_unknown_architecture_is_a_clear_error():
    class Strange(nn.Module):
        config = type("C", (), {"model_type": "strange"})()

    with pytest.raises(UnsupportedArchitectureError, match="'strange' has no adapter.*Supported: "):
        adapter_for(Strange())


def test_adapter_checks_real_modules(tiny_models):
    model = tiny_models["gpt2"].model
    model.config.model_type = "llama"  # claims llama, has GPT-2 modules
    try:
        with pytest.raises(UnsupportedArchitectureError, match="decoder layers at 'model.layers'"):
            adapter_for(model)
    finally:
        model.config.model_type = "gpt2"


def test_missing_model_path_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="Model folder .* does not exist"):
        load_model(str(tmp_path / "nothing-here"))


def test_dtype_is_selectable(tiny_checkpoints):
    lm = load_model(ModelSpec(str(tiny_checkpoints["llama"]), dtype="bfloat16", device="cpu"))
    assert next(lm.model.parameters()).dtype == torch.bfloat16


def test_joiner_by_script():
    assert joiner("The capital of France is", "en") == " "
    assert joiner("法国的首都是", "zh") == ""
    assert joiner("Prompt ", "en") == ""


def test_batched_logprobs_equal_one_by_one(tiny_lm):
    items = [
        encode_completion(tiny_lm, "The capital of France is", "Paris", "en"),
        encode_completion(tiny_lm, "法国的首都是", "巴黎", "zh"),
        encode_completion(tiny_lm, "La capitale de la France est", "Paris", "fr"),
    ]
    together = answer_logprobs(tiny_lm, items)
    for item, batched in zip(items, together):
        (alone,) = answer_logprobs(tiny_lm, [item])
        assert len(alone) == len(item.answer_ids)
        assert torch.allclose(alone, batched, atol=1e-4)
    # and they agree with the model's own full forward
    item = items[0]
    ids = torch.tensor([list(item.prompt_ids) + list(item.answer_ids)])
    logits = tiny_lm.model(input_ids=ids).logits[0].log_softmax(-1)
    first = len(item.prompt_ids) - 1
    expected = torch.stack([logits[first + k, t] for k, t in enumerate(item.answer_ids)])
    assert torch.allclose(expected, together[0], atol=1e-4)


def test_many_items_are_batched_by_length_and_returned_in_input_order(tiny_lm):
    prompts = [("The capital of France is", "Paris", "en"), ("法国的首都是", "巴黎", "zh"),
               ("La capitale de la France, la belle ville des lumières, est", "Paris", "fr")]
    items = [encode_completion(tiny_lm, *prompts[i % 3]) for i in range(11)]
    together = answer_logprobs(tiny_lm, items, batch_size=4)  # 3 batches, rows regrouped by length
    for item, batched in zip(items, together):
        (alone,) = answer_logprobs(tiny_lm, [item])
        assert len(batched) == len(item.answer_ids)
        assert torch.allclose(alone, batched, atol=1e-4)


def test_batched_greedy_equals_one_by_one(tiny_lm):
    prompts = [tiny_lm.tokenizer(p)["input_ids"] for p in ("The capital of France is", "Die Hauptstadt von Spanien ist ein")]
    together = greedy_generate(tiny_lm, prompts, [3, 2])
    assert [len(t) for t in together] == [3, 2]
    for prompt, out, n in zip(prompts, together, [3, 2]):
        assert greedy_generate(tiny_lm, [prompt], [n])[0] == out


def test_items_sharing_a_prefix_run_once_with_the_same_scores(tiny_lm, monkeypatch):
    from memla_core.scoring import Completion

    # New and true answers after one prompt: a one-token answer's input (the prompt) is a prefix of
    # a longer answer's, and so is a shorter answer starting with the same tokens.
    prompt = tuple(tiny_lm.tokenizer("The capital of France is")["input_ids"])
    other = tuple(tiny_lm.tokenizer("Die Hauptstadt ist")["input_ids"])
    a, b, c, d = 11, 12, 13, 14
    items = [Completion(prompt, (a,)), Completion(prompt, (b, c, d)), Completion(prompt, (b, c)),
             Completion(prompt, (a,)), Completion(other, (d, a))]
    rows_run: list[int] = []
    base_model = tiny_lm.model.base_model
    real_forward = base_model.forward

    def counting(*args, **kwargs):
        rows_run.append(kwargs["input_ids"].shape[0])
        return real_forward(*args, **kwargs)

    monkeypatch.setattr(base_model, "forward", counting)
    shared = answer_logprobs(tiny_lm, items)
    assert sum(rows_run) == 2  # prompt+b+c hosts the first four items; the other prompt runs alone
    monkeypatch.undo()
    for item, got in zip(items, shared):
        (alone,) = answer_logprobs(tiny_lm, [item], grad=True)  # the unshared path, as editors use it
        assert len(got) == len(item.answer_ids)
        assert torch.allclose(alone.detach(), got, atol=1e-4)
