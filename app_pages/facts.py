"""Facts: find a fact by subject, relation, answer or id and read it in all its languages."""

import streamlit as st

from app_support import state
from app_support.widgets import PAGES, show_notice, table
from memla_core.views import fact_side_by_side, facts_overview, filter_facts, language_label, relations

st.title("Facts")
st.markdown("Pick the fact to edit. Every fact has an edit prompt, the true and the new answer, and test prompts in each language.")
show_notice()

data = state.dataset()
search_col, relation_col = st.columns([2, 1])
query = search_col.text_input("Search", placeholder="subject, answer, relation or id — in any language, e.g. France, 巴黎, capital")
relation = relation_col.selectbox("Relation", ["all relations", *relations(data)])
found = filter_facts(data, query, "" if relation == "all relations" else relation)

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
    st.stop()

edit = fact.in_language(fact.language_codes[0]).edit
st.subheader(fact.label)
st.markdown(
    f"**Relation:** {fact.relation_description or fact.relation} · **Edit:** “{edit.filled()}” "
    f"**{edit.target_true or '?'}** → **{edit.target_new}** · {len(fact.languages)} languages"
)
shown = st.multiselect("Languages", fact.language_codes, default=fact.language_codes, format_func=language_label)
table(
    fact_side_by_side(fact, shown), f"fact {fact.example_id}", index=True, height=min(38 * 20, 600),
)
st.caption("Neighborhood prompts are about *other* subjects: their answers must not change (locality). "
           "Multi-hop questions follow from the *new* fact.")
left, right = st.columns(2)
left.page_link(PAGES["neurons"], label="Next: find its knowledge neurons", icon=":material/hub:")
right.page_link(PAGES["edit"], label="Or go straight to editing", icon=":material/edit:")
