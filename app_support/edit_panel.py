"""The Edit page's work and results: run edits with live progress, compare, export, free text."""

from __future__ import annotations

import math
from typing import Any

import streamlit as st

from memla_core.charts import edit_trace_chart, grouped_bars, score_heatmap
from memla_core.data.schema import Fact
from memla_core.editing import EditRequest, method_spec
from memla_core.evaluation import METRICS
from memla_core.export import adapter_zip, has_adapter, portable_base_model
from memla_core.knowledge import describe
from memla_core.models import LoadedModel
from memla_core.session import (
    EditOutcome,
    check_edit_health,
    compute_edit,
    compute_neurons,
    evaluate_fact,
    generate_text,
)
from memla_core.views import (
    COMPARISON_COLUMNS,
    edit_comparison,
    edit_details,
    methods_side_by_side,
    methods_summary,
    style_scores,
)

from . import state
from .knowledge_panel import fact_knowledge
from .resources import before_report, unedited_health_reference
from .sidebar import method_title
from .widgets import finish, long_task, table

DEFAULT_TARGETS = ("en", "zh", "fr", "de")


def default_targets(fact: Fact, source: str) -> list[str]:
    """The source language and the paper's main languages: a few, because each costs seconds."""
    return list(dict.fromkeys([source, *(c for c in DEFAULT_TARGETS if c in fact.languages)]))[:4]


def run_edits(lm: LoadedModel, fact: Fact, source: str, targets: list[str], configs: dict[str, Any]) -> None:
    """Compute each method's edit, score before and after, keep the outcomes in this session.
    With an edit stack, each edit is computed and scored on top of it ("before": the stacked model)."""
    outcomes: dict[str, EditOutcome] = {}
    found = None
    under = state.stack().edits
    with long_task("Editing") as task:
        if under:
            before = evaluate_fact(lm, fact, targets, None, source, task.counter("Scoring your stacked model"),
                                   task.cancel, under=under)
        else:
            before = before_report(lm, fact, targets, source, progress=task.counter("Scoring the unedited model"))
        for method, config in configs.items():
            spec, title = method_spec(method), method_title(method)
            neuron_config = spec.neuron_config(config)
            neurons = None
            if neuron_config is not None:
                found = state.neurons_for(fact, source, neuron_config) or found
                if found is None or found.config != neuron_config:
                    found = compute_neurons(lm, fact, source, neuron_config, task.counter("Finding neurons"), task.cancel)
                neurons = found
            st.markdown(f"**{title}**")
            chart, trace = st.empty(), []
            max_steps = spec.steps(config)
            task.show(0.0, f"{title}: computing the edit …")

            def on_step(record: dict[str, float], method=method, title=title, chart=chart, trace=trace,
                        max_steps=max_steps) -> None:
                trace.append(record)
                done = record["step"] / max_steps if max_steps else 0.5
                task.show(done, f"{title}: step {record['step']}, loss {record['loss']:.3f}, P(new) {record['p_new']:.3f}")
                chart.plotly_chart(edit_trace_chart(trace, f"{title}: optimisation"), key=f"live:{method}:{len(trace)}")

            edit = compute_edit(lm, EditRequest(fact, source), method, config, neurons, on_step, task.cancel,
                                pool=state.dataset().facts, under=under)
            after = evaluate_fact(lm, fact, targets, edit, source, task.counter(f"Scoring the {title} edit"), task.cancel,
                                  under=under)
            reference = None if under else unedited_health_reference(lm, fact, targets)
            health = check_edit_health(lm, fact, edit, targets, under, reference)
            outcomes[method] = EditOutcome(edit, before, after, health)
    if task.ok:
        st.session_state[state.EDITS] = outcomes
        if found is not None:
            st.session_state[state.NEURONS] = found
        st.session_state[state.FREE_TEXT] = None
        st.session_state[state.ABILITY] = None
        finish(f"Edit applied with {', '.join(map(method_title, outcomes))} — to your answers only.")


def revert() -> None:
    st.session_state[state.EDITS] = {}
    st.session_state[state.FREE_TEXT] = None
    st.session_state[state.ABILITY] = None
    stacked = len(state.stack())
    state.notify(f"Edit reverted: answers come from your {stacked} stacked edit(s) again." if stacked
                 else "Edit reverted: answers come from the unedited model again.")


def show_outcomes(outcomes: dict[str, EditOutcome], lm: LoadedModel) -> None:
    fact = state.current_fact()
    languages = list(next(iter(outcomes.values())).after.summary["target_lang"])
    knew = {lang: describe(check) for lang, check in fact_knowledge(lm, fact, languages).items()} if fact else {}
    comparisons = {m: edit_comparison(o.before, o.after, method_title(m), fact, knew) for m, o in outcomes.items()}
    if len(outcomes) > 1:
        st.subheader("Methods side by side")
        source = next(iter(outcomes.values())).edit.source_language
        summary = methods_summary({method_title(m): o.after for m, o in outcomes.items()}, source)
        table(summary, "methods summary", styled=style_scores(summary, [c for c in summary.columns if c != "method"]))
        st.caption(f"After the edit: each metric in the source language ({source}) and averaged over the other "
                   "target languages (transferability).")
        metric = st.radio("Metric", METRICS, horizontal=True, key="side_by_side_metric")
        grid = methods_side_by_side(list(comparisons.values()), metric)
        st.plotly_chart(score_heatmap(grid, f"{metric} after the edit, per target language"))
        table(grid.reset_index(), f"methods side by side {metric}")
    for tab, (method, outcome) in zip(st.tabs([method_title(m) for m in outcomes]), outcomes.items()):
        with tab:
            _show_outcome(method, outcome, comparisons[method], lm)


def _show_outcome(method: str, outcome: EditOutcome, comparison, lm: LoadedModel) -> None:
    edit, title = outcome.edit, method_title(method)
    changed = (f"{edit.num_changed_weights:,} weights changed" if edit.weight_deltas
               else "no weight changed: the new fact is put before every prompt")
    steps = f"{len(edit.trace)} optimisation steps, " if edit.trace else ""
    st.markdown(f"**{title}**, edited in `{edit.source_language}`: {edit.seconds:.1f} s, {steps}{changed}.")
    health_banner(outcome)
    transfer = outcome.after.transferability()
    others = len(outcome.after.summary) - int((outcome.after.summary["target_lang"] == edit.source_language).sum())
    if others:
        st.markdown(f"Carried over to the {others} other language(s), on average: "
                    + " · ".join(f"**{m}** {transfer[m]:.1f}" for m in METRICS if not math.isnan(transfer[m])))
    table(comparison, f"{title} before and after", styled=style_scores(comparison[COMPARISON_COLUMNS]),
          height=35 * (len(comparison) + 1) + 3)  # every target language visible, no inner scrolling
    per_language = comparison.set_index("target language")[list(METRICS)].T.dropna(how="all").dropna(axis=1, how="all")
    st.plotly_chart(grouped_bars(per_language, f"{title}: scores per target language after the edit"),
                    key=f"per-language:{method}")
    st.caption(
        "**ES**: the new answer is more likely than the old one on the edit prompt; **PS**: the same on "
        "paraphrases; **NS**: answers about *other* subjects (neighborhood) still right, token F1 — compare with "
        "*NS before*, the unedited model's own score; **QS**: multi-hop questions answered with the new fact, "
        "token F1. Percent after the edit; the CSV has every metric before and after. — : no such prompts."
    )
    if edit.trace:
        st.plotly_chart(edit_trace_chart(edit.trace, f"{title}: optimisation"), key=f"trace:{method}")
    if edit.context:
        with st.expander("The context put before every prompt"):
            st.code(edit.context, language=None, wrap_lines=True)
    with st.expander("Every prompt, before and after"):
        details = edit_details(outcome.before, outcome.after)
        # Streamlit writes a missing number as "None"; "—" says "not measured for this prompt".
        table(details, f"{title} prompts before and after", styled=details.style.format(na_rep="—", precision=3))
    if has_adapter(edit):
        st.download_button(
            "Download this edit as a peft LoRA adapter (.zip)",
            adapter_zip(edit, base_model=portable_base_model(lm)),
            file_name=f"{title}-{edit.fact_id}-{edit.source_language}-adapter.zip",
            mime="application/zip",
            key=f"adapter:{method}",
            on_click="ignore",
            icon=":material/deployed_code:",
            help="adapter_model.safetensors + adapter_config.json + README.md; load with "
                 "PeftModel.from_pretrained(base_model, folder) (the README shows how, for this base model).",
        )


def health_banner(outcome: EditOutcome) -> None:
    """A red banner when the edit broke the model: its scores below would otherwise look perfect."""
    health = outcome.health
    if health is not None and health.degenerate:
        st.error(
            f"**This edit broke the model** — its scores are not to be trusted: {'; '.join(health.problems)}. "
            "Revert it, then lower the learning rate or the number of steps.",
            icon=":material/error:",
        )


def free_text(lm: LoadedModel, fact: Fact, source: str, outcomes: dict[str, EditOutcome]) -> None:
    """Any prompt, answered by the unedited model, this session's edit stack and each of its edits
    (on top of the stack)."""
    with st.form("free_text"):
        prompt = st.text_input("Prompt", value=fact.in_language(source).edit.filled())
        tokens = st.slider("Tokens to generate", 1, 60, 12)
        asked = st.form_submit_button("Answer", icon=":material/chat:")
    if asked and prompt.strip():
        under = state.stack().edits
        answers = {"Unedited model": generate_text(lm, prompt, tokens)}
        if under:
            answers[f"Your {len(under)} stacked edit(s)"] = generate_text(lm, prompt, tokens, None, under)
        for method, outcome in outcomes.items():
            answers[f"Edited with {method_title(method)}"] = generate_text(lm, prompt, tokens, outcome.edit, under)
        st.session_state[state.FREE_TEXT] = {"prompt": prompt, "answers": answers}
    shown = st.session_state[state.FREE_TEXT]
    if shown:
        st.markdown(f"*{shown['prompt']}* …")
        for col, (who, text) in zip(st.columns(len(shown["answers"])), shown["answers"].items()):
            col.markdown(f"**{who}**")
            col.code(text or "(nothing)", language=None, wrap_lines=True)
