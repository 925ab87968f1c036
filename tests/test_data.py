import copy
import io
import json

import pytest

from memla_core.data import DatasetError, MissingLanguageError, load_mkeb
from memla_core.data.loader import fact_to_record


def record(**over):
    base = {
        "example_id": 7,
        "relation_description": "capital of a country",
        "edit": {
            "en": {"subject": "France", "prompt": "The capital of {} is", "target_true": "Paris", "target_new": "Lyon"},
            "de": {"subject": "Frankreich", "prompt": "Die Hauptstadt von {} ist", "target_true": "Paris", "target_new": "Lyon"},
        },
        "paraphrase_prompts": {"en": ["France's capital is"], "de": ["Frankreichs Hauptstadt ist"]},
        "neighborhood_prompts": {"en": ["The capital of Spain is"], "de": ["Die Hauptstadt von Spanien ist"]},
        "neighborhood_answers": {"en": ["Madrid"], "de": ["Madrid"]},
    }
    base.update(over)
    return base


def test_valid_partial_language_record_loads_and_round_trips(tmp_path):
    ds = load_mkeb([record()])
    fact = ds.get(7)
    assert fact.language_codes == ("en", "de")
    assert fact.in_language("en").edit.filled() == "The capital of France is"
    with pytest.raises(MissingLanguageError, match="has no 'zh' version; it has en, de"):
        fact.in_language("zh")
    path = tmp_path / "x.json"
    ds.save(path)
    assert load_mkeb(path).facts == ds.facts
    assert load_mkeb(io.StringIO(path.read_text())).get("7") == fact


def test_prompt_without_placeholder_is_used_as_is():
    r = record()
    r["edit"]["en"]["prompt"] = "What is the capital of France?"
    fact = load_mkeb([r]).get(7)
    assert fact.in_language("en").edit.filled() == "What is the capital of France?"


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda r: r["neighborhood_answers"]["en"].append("Rome"), "record 7/neighborhood_answers.en: 2 answers for 1"),
        (lambda r: r["edit"]["en"].update(target_new=""), "record 7/edit.en.target_new: missing or empty"),
        (lambda r: r["edit"]["de"].update(prompt="{} {} ist"), "record 7/edit.de.prompt: '{}' appears 2 times"),
        (lambda r: r["edit"]["en"].update(target_new="Paris"), "record 7/edit.en.target_new: equals target_true"),
        (lambda r: r["paraphrase_prompts"].pop("de"), "record 7/paraphrase_prompts.de: missing language 'de'"),
        (lambda r: r["paraphrase_prompts"].update(fr=["x"]), "record 7/paraphrase_prompts.fr: language has no edit"),
        (lambda r: r.update(multi_hop_questions={"en": ["q"], "de": ["q"]}), "record 7/multi_hop_new_answer.en: missing"),
        (lambda r: r.pop("edit"), "record 7/edit: missing or empty"),
    ],
)
def test_validation_names_record_and_field(mutate, message):
    r = copy.deepcopy(record())
    mutate(r)
    with pytest.raises(DatasetError) as err:
        load_mkeb([r, record(example_id=8)], strict=True)  # lenient loading accepts a missing paraphrase language
    assert message in str(err.value)
    assert all("record 8" not in p for p in err.value.problems)


def test_file_level_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        load_mkeb(bad)
    bad.write_text(json.dumps({"a": 1}))
    with pytest.raises(DatasetError, match="expected a JSON list"):
        load_mkeb(bad)
    with pytest.raises(DatasetError, match="duplicate|more than one"):
        load_mkeb([record(), record()])


def test_targets_are_stripped_and_missing_true_allowed():
    r = record()
    r["edit"]["en"]["target_new"] = " Lyon "
    r["edit"]["en"]["target_true"] = None
    fact = load_mkeb([r]).get(7)
    assert fact.in_language("en").edit.target_new == "Lyon"
    assert fact.in_language("en").edit.target_true is None
    assert fact_to_record(fact)["edit"]["en"]["target_true"] is None


def test_bundled_stats_and_hf_view(bundled):
    stats = bundled.stats()
    assert stats.loc["total", "en"] == len(bundled)
    hf = bundled.to_hf_dataset()
    assert len(hf) == sum(len(f.languages) for f in bundled)
