"""The MKEB record as typed, immutable classes (docs/method.md §3)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from ..fields import converted

MKEB_LANGUAGES: tuple[str, ...] = ("en", "zh", "fr", "de", "ja", "ko", "pt", "ru", "it", "es", "pl", "th")
"""The 12 MKEB languages, in the paper's order."""

LANGUAGE_NAMES: dict[str, str] = {
    "en": "English", "zh": "Chinese", "fr": "French", "de": "German", "ja": "Japanese",
    "ko": "Korean", "pt": "Portuguese", "ru": "Russian", "it": "Italian", "es": "Spanish",
    "pl": "Polish", "th": "Thai", "cs": "Czech", "nl": "Dutch", "tr": "Turkish", "vi": "Vietnamese",
}

# Scripts written without spaces between words: a completion is glued to its prompt.
UNSPACED_LANGUAGES = frozenset({"zh", "ja", "th"})


class NotFoundError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0])


class MissingLanguageError(NotFoundError):
    """A fact asked for in a language it does not have."""


class FactNotFoundError(NotFoundError):
    """A fact id that is not in the dataset."""


@dataclass(frozen=True)
class EditPrompt:
    """One language's edit request. ``target_true`` is ``None`` where a source lacks it."""

    subject: str
    prompt: str
    target_new: str
    target_true: str | None = None

    @property
    def has_placeholder(self) -> bool:
        return "{}" in self.prompt

    def filled(self) -> str:
        """The prompt with the subject written in (imported prompts without ``{}`` as they are)."""
        return self.prompt.replace("{}", self.subject, 1) if self.has_placeholder else self.prompt


@dataclass(frozen=True)
class FactInLanguage:
    edit: EditPrompt
    paraphrase_prompts: tuple[str, ...] = ()
    neighborhood_prompts: tuple[str, ...] = ()
    neighborhood_answers: tuple[str, ...] = ()
    multi_hop_questions: tuple[str, ...] = ()
    multi_hop_new_answer: str | None = None


@converted(languages=dict)  # a copy: a Fact can key caches, whatever happens to the mapping it was given
@dataclass(frozen=True)
class Fact:
    """One MKEB record: the same fact in several languages."""

    example_id: str
    relation_description: str
    languages: Mapping[str, FactInLanguage]
    relation: str = ""
    metadata: Mapping[str, object] = field(default_factory=dict)

    def __hash__(self) -> int:
        return hash((self.example_id, tuple(sorted(self.languages))))

    @property
    def language_codes(self) -> tuple[str, ...]:
        """Languages of this fact, MKEB languages first in the paper's order."""
        known = [code for code in MKEB_LANGUAGES if code in self.languages]
        return tuple(known + sorted(set(self.languages) - set(known)))

    def in_language(self, code: str) -> FactInLanguage:
        try:
            return self.languages[code]
        except KeyError:
            raise MissingLanguageError(
                f"Fact '{self.example_id}' has no '{code}' version; it has "
                f"{', '.join(self.language_codes)}."
            ) from None

    @property
    def label(self) -> str:
        """Short human label, e.g. ``geo-capital-france: France → Lyon``."""
        code = "en" if "en" in self.languages else self.language_codes[0]
        edit = self.languages[code].edit
        return f"{self.example_id}: {edit.subject} — {edit.target_true or '?'} → {edit.target_new}"
