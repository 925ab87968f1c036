"""Batched model queries shared by neurons, editors and evaluation.

Vocabularies of multilingual models are huge (Gemma 3: 262k tokens), so logits are computed
only at the positions that predict answer tokens instead of materialising batch×length×vocab.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from transformers import GenerationConfig

from .data.schema import UNSPACED_LANGUAGES
from .models import LoadedModel


@dataclass(frozen=True)
class Completion:
    """A prompt and the answer tokens that should follow it."""

    prompt_ids: tuple[int, ...]
    answer_ids: tuple[int, ...]


def joiner(prompt: str, lang: str) -> str:
    """What separates a cloze prompt from its answer: nothing in unspaced scripts."""
    if lang in UNSPACED_LANGUAGES or not prompt or prompt[-1].isspace():
        return ""
    return " "


def encode_prompt(lm: LoadedModel, prompt: str) -> list[int]:
    return lm.tokenizer(prompt)["input_ids"]


def encode_completion(lm: LoadedModel, prompt: str, answer: str, lang: str) -> Completion:
    """Token ids of ``prompt`` and of ``answer`` as the model would continue it.

    Encoding prompt+answer together keeps the tokenizer's own word-boundary handling; when the
    boundary merges across prompt and answer, the answer is encoded alone instead.
    """
    tok = lm.tokenizer
    prompt_ids = tok(prompt)["input_ids"]
    full = tok(prompt + joiner(prompt, lang) + answer)["input_ids"]
    if full[: len(prompt_ids)] == prompt_ids and len(full) > len(prompt_ids):
        answer_ids = full[len(prompt_ids) :]
    else:
        answer_ids = tok(joiner(prompt, lang) + answer, add_special_tokens=False)["input_ids"]
    if not answer_ids:
        raise ValueError(f"Answer '{answer}' encodes to no tokens with this tokenizer.")
    return Completion(tuple(prompt_ids), tuple(answer_ids))


def project_to_logits(lm: LoadedModel, hidden: torch.Tensor) -> torch.Tensor:
    """Final hidden states -> logits, as the model's LM head does (incl. Gemma's soft-capping)."""
    logits = lm.model.get_output_embeddings()(hidden)
    cap = getattr(lm.model.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


def answer_logprobs(
    lm: LoadedModel, items: Sequence[Completion], batch_size: int = 32, grad: bool = False
) -> list[torch.Tensor]:
    """Teacher-forced log-probabilities of each answer token, one tensor per item.

    With ``grad=True`` the result stays differentiable (editors train through it).
    """
    if not grad:
        return _shared_answer_logprobs(lm, items, batch_size)
    # Batches are formed in order of sequence length, so a batch pads its rows to similar widths
    # (languages tokenise the same prompt into 5 to 30 tokens); results come back in input order.
    if len(items) <= batch_size:  # one batch: keep the rows as given (editors' training is unchanged)
        return _answer_logprobs_batch(lm, items, grad)
    order = sorted(range(len(items)), key=lambda i: len(items[i].prompt_ids) + len(items[i].answer_ids))
    results: dict[int, torch.Tensor] = {}
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        results.update(zip(batch, _answer_logprobs_batch(lm, [items[i] for i in batch], grad)))
    return [results[i] for i in range(len(items))]


def _input_ids(item: Completion) -> tuple[int, ...]:
    """What teacher forcing feeds the model: the prompt and all answer tokens but the last."""
    return item.prompt_ids + item.answer_ids[:-1]


def _shared_answer_logprobs(lm: LoadedModel, items: Sequence[Completion], batch_size: int) -> list[torch.Tensor]:
    """``answer_logprobs`` without gradients, running each distinct token prefix once.

    Evaluation scores the new and the true answer after the same prompt; with causal attention a
    position's output depends only on the tokens before it, so an item whose input is a prefix of
    another's (a one-token answer always is) is read from that row instead of being run again.
    This sharing is specific to memla's query mix, hence hand-written rather than a library call.
    """
    inputs = [_input_ids(it) for it in items]
    by_length = sorted(range(len(items)), key=lambda i: -len(inputs[i]))
    hosts: list[int] = []  # items whose inputs are run
    host_of: dict[int, int] = {}
    for i in by_length:
        seq = inputs[i]
        host_of[i] = next((h for h in hosts if inputs[h][: len(seq)] == seq), i)
        if host_of[i] == i:
            hosts.append(i)
    hosts.reverse()  # shortest first: a batch pads its rows to similar widths
    readers: dict[int, list[int]] = {}
    for i in range(len(items)):
        readers.setdefault(host_of[i], []).append(i)
    results: dict[int, torch.Tensor] = {}
    for start in range(0, len(hosts), batch_size):
        batch = hosts[start : start + batch_size]
        reads = [(row, items[i]) for row, h in enumerate(batch) for i in readers[h]]
        owners = [i for h in batch for i in readers[h]]
        results.update(zip(owners, _read_logprobs(lm, [items[h] for h in batch], reads, grad=False)))
    return [results[i] for i in range(len(items))]


def _answer_logprobs_batch(lm: LoadedModel, items: Sequence[Completion], grad: bool) -> list[torch.Tensor]:
    return _read_logprobs(lm, items, list(enumerate(items)), grad)


def _read_logprobs(
    lm: LoadedModel, hosts: Sequence[Completion], reads: Sequence[tuple[int, Completion]], grad: bool
) -> list[torch.Tensor]:
    """Run ``hosts`` as one batch; for each (host row, item) in ``reads`` return the item's answer
    log-probabilities read at its positions in that row."""
    device = lm.device
    input_ids, mask = _teacher_forcing_batch(lm, hosts)
    rows, cols, targets, owners = [], [], [], []
    for owner, (r, it) in enumerate(reads):
        first = len(it.prompt_ids) - 1
        for k, target in enumerate(it.answer_ids):
            rows.append(r)
            cols.append(first + k)
            targets.append(target)
            owners.append(owner)
    with torch.set_grad_enabled(grad):
        hidden = lm.model.base_model(input_ids=input_ids, attention_mask=mask).last_hidden_state
        picked = hidden[torch.tensor(rows, device=device), torch.tensor(cols, device=device)]
        logprobs = torch.log_softmax(project_to_logits(lm, picked).float(), dim=-1)
        chosen = logprobs[torch.arange(len(targets), device=device), torch.tensor(targets, device=device)]
    out: list[list[torch.Tensor]] = [[] for _ in reads]
    for value, owner in zip(chosen, owners):
        out[owner].append(value)
    return [torch.stack(v) for v in out]


def right_padded(lm: LoadedModel, seqs: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id rows padded on the right, and their attention mask: real tokens never attend to
    pads, and each row's positions are those it has alone."""
    width = max(len(s) for s in seqs)
    pad = lm.tokenizer.pad_token_id or 0
    input_ids = torch.full((len(seqs), width), pad, dtype=torch.long, device=lm.device)
    mask = torch.zeros_like(input_ids)
    for r, seq in enumerate(seqs):
        input_ids[r, : len(seq)] = torch.tensor(list(seq), device=lm.device)
        mask[r, : len(seq)] = 1
    return input_ids, mask


def _teacher_forcing_batch(lm: LoadedModel, items: Sequence[Completion]) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompt+answer (minus its last token), right-padded."""
    return right_padded(lm, [_input_ids(it) for it in items])


def answer_token_hits(lm: LoadedModel, items: Sequence[Completion], batch_size: int = 32) -> list[list[bool]]:
    """For each answer token: is it the model's argmax, teacher-forced (zsRE's accuracy)."""
    hits: list[list[bool]] = []
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        device = lm.device
        input_ids, mask = _teacher_forcing_batch(lm, chunk)
        with torch.no_grad():
            hidden = lm.model.base_model(input_ids=input_ids, attention_mask=mask).last_hidden_state
            for r, it in enumerate(chunk):
                first = len(it.prompt_ids) - 1
                pos = torch.arange(first, first + len(it.answer_ids), device=device)
                pred = project_to_logits(lm, hidden[r, pos]).argmax(-1).tolist()
                hits.append([p == t for p, t in zip(pred, it.answer_ids)])
    return hits


def answer_logits(lm: LoadedModel, items: Sequence[Completion], batch_size: int = 32) -> Iterator[torch.Tensor]:
    """Teacher-forced logits (answer length × vocabulary, float32) at each item's answer positions,
    one item at a time: a batch's full-vocabulary rows are never all kept at once."""
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        input_ids, mask = _teacher_forcing_batch(lm, chunk)
        with torch.no_grad():
            hidden = lm.model.base_model(input_ids=input_ids, attention_mask=mask).last_hidden_state
            for r, it in enumerate(chunk):
                first = len(it.prompt_ids) - 1
                pos = torch.arange(first, first + len(it.answer_ids), device=lm.device)
                yield project_to_logits(lm, hidden[r, pos]).float()


def greedy_generate(
    lm: LoadedModel, prompts: Sequence[Sequence[int]], max_new_tokens: Sequence[int], batch_size: int = 32
) -> list[list[int]]:
    """Greedy continuation of each prompt (token ids), ``max_new_tokens[i]`` tokens for row i.

    Rows are batched by how many tokens they need (then by prompt length), so that no batch runs
    decoding steps only some of its rows use: on a 262k vocabulary every step of every row costs
    a full LM-head product. Results come back in the input order.
    """
    order = sorted(range(len(prompts)), key=lambda i: (max_new_tokens[i], len(prompts[i])))
    results: dict[int, list[int]] = {}
    start = 0
    while start < len(order):
        need = max_new_tokens[order[start]]
        stop = start
        while stop < len(order) and stop - start < batch_size and max_new_tokens[order[stop]] == need:
            stop += 1
        batch = order[start:stop]
        generated = _greedy_batch(lm, [prompts[i] for i in batch], [max_new_tokens[i] for i in batch])
        results.update(zip(batch, generated))
        start = stop
    return [results[i] for i in range(len(prompts))]


def _greedy_batch(lm: LoadedModel, chunk: Sequence[Sequence[int]], lengths: Sequence[int]) -> list[list[int]]:
    tok = lm.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    # Exactly max(lengths) tokens: NS/QS compare as many tokens as the answer has.
    config = GenerationConfig(
        do_sample=False, pad_token_id=pad, max_new_tokens=max(lengths), min_new_tokens=max(lengths)
    )
    width = max(len(p) for p in chunk)
    device = lm.device
    input_ids = torch.full((len(chunk), width), pad, dtype=torch.long, device=device)
    mask = torch.zeros_like(input_ids)
    for r, ids in enumerate(chunk):
        input_ids[r, width - len(ids) :] = torch.tensor(list(ids), device=device)  # left padding
        mask[r, width - len(ids) :] = 1
    with torch.no_grad():
        generated = lm.model.generate(input_ids=input_ids, attention_mask=mask, generation_config=config)
    return [generated[r, width : width + n].tolist() for r, n in enumerate(lengths)]
