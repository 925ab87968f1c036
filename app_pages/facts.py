"""Facts: find a fact by subject, relation, answer or id and read it in all its languages."""

import streamlit as st

from app_support import state
from app_support.knowledge_panel import fact_knowledge, known_fact_ids, loaded_model
from app_support.widgets import PAGES, halt, show_notice, table
from memla_core.knowledge import describe
from memla_core.views import fact_side_by_side, facts_overview, filter_facts, language_label, relations

st.title("Facts")
st.markdown("Pick the fact to edit. Every fact has an edit prompt, the true and the new answer, and test prompts in each language.")
show_notice()

data = state.dataset()
search_col, relation_col = st.columns([2, 1])
query = search_col.text_input("Search", placeholder="subject, answer, relation or id — in any language, e.g. France, 巴黎, capital")
relation = relation_col.selectbox("Relation", ["all relations", *relations(data)])
found = filter_facts(data, query, "" if relation == "all relations" else relation)
lm = loaded_model()
source = st.session_state[state.SOURCE_LANGUAGE]
if lm is not None and st.checkbox(
    f"Only facts the model knows in {language_label(source)}",
    help="Known: greedy decoding of the unedited model gives the true answer on the edit prompt. Editing "
         "research edits what the model knows; the source language is the one set on the Edit page.",
):
    known = known_fact_ids(lm, data.facts, source)
    found = [fact for fact in found if fact.example_id in known]

ids = [fact.example_id for fact in found]
current = st.session_state[state.FACT_ID]
labels = {fact.example_id: fact.label for fact in found}
picked = st.selectbox(
    f"Fact to work on ({len(found)} of {len(data)} match the search)", ids,
    index=ids.index(current) if current in ids else None,
    format_func=labels.get, placeholder="Choose a fact (type to search)",
)
if picked is not None and picked != current:
    state.set_fact(picked)
    st.rerun()
with st.expander("Browse the matching facts", expanded=current is None or bool(query)):
    table(facts_overview(found), "matching facts", height=min(36 * (len(found) + 1) + 3, 320))

fact = state.current_fact()
if fact is None:
    st.info("No fact picked yet: choose one above." if found else "No fact matches; change the search.")
    halt()

edit = fact.in_language(fact.language_codes[0]).edit
st.subheader(fact.label)
st.markdown(
    f"**Relation:** {fact.relation_description or fact.relation} · **Edit:** “{edit.filled()}” "
    f"**{edit.target_true or '?'}** → **{edit.target_new}** · {len(fact.languages)} languages"
)
shown = st.multiselect("Languages", fact.language_codes, default=fact.language_codes, format_func=language_label)
if not shown:
    st.caption("No language picked: all are shown.")
    shown = list(fact.language_codes)
side_by_side = fact_side_by_side(fact, shown)
if lm is not None:
    checks = fact_knowledge(lm, fact)
    verdicts = {language_label(code): describe(check) for code, check in checks.items()}
    side_by_side.loc["unedited model knows it?"] = [verdicts.get(col, "") for col in side_by_side.columns]
    known_in = sum(1 for code in shown if code in checks and checks[code].known)
    unknown = [code for code in shown if code in checks and checks[code].status == "unknown"]
    st.caption(f"{lm.key} knows this fact in {known_in} of {len(shown)} shown languages"
               + (f"; not in {', '.join(unknown)}: there, unlearning the true answer says little." if unknown else "."))
# As tall as its rows (35 px each, with the header), up to 600 px: a fixed height drew empty rows.
table(side_by_side, f"fact {fact.example_id}", index=True, height=min(35 * (len(side_by_side) + 1) + 3, 600))
st.caption("Neighborhood prompts are about *other* subjects: their answers must not change (locality). "
           "Multi-hop questions follow from the *new* fact.")
left, right = st.columns(2)
left.page_link(PAGES["neurons"], label="Next: find its knowledge neurons", icon=":material/hub:")
right.page_link(PAGES["edit"], label="Or go straight to editing", icon=":material/edit:")
