import torch
from memla_core.editing import EditRequest, MemlaConfig, MemlaEditor
from memla_core.evaluation import evaluate
from memla_core.neurons import NeuronConfig, attribute_prompt, find_neurons
import numpy as np


def test_tiny_pipeline(tiny_lm, bundled):
    fact = bundled.get("geo-capital-france")
    cfg = NeuronConfig(steps=4, threshold=0.1)
    fast = attribute_prompt(tiny_lm, "The capital of France is", "Paris", "en", cfg)
    slow = attribute_prompt(tiny_lm, "The capital of France is", "Paris", "en", cfg, naive=True)
    assert np.allclose(fast.scores, slow.scores, rtol=1e-3, atol=1e-7)
    neurons = find_neurons(tiny_lm, fact, "en", cfg, cache=False)
    editor = MemlaEditor(MemlaConfig(neurons=cfg, lr=5e-2), neurons=neurons)
    before = {k: v.clone() for k, v in tiny_lm.model.state_dict().items()}
    edit = editor.compute(tiny_lm, EditRequest(fact, "en"))
    with edit.applied(tiny_lm):
        report = evaluate(tiny_lm, fact, ["en", "zh"], edit=edit)
    assert all(torch.equal(before[k], v) for k, v in tiny_lm.model.state_dict().items())
    assert set(report.summary.target_lang) == {"en", "zh"}
