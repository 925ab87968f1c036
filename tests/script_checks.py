"""Checks shared by the tests of bundled multilingual text (the MKEB facts, the ability probe):
which script each language's letters must be written in, and one assertion listing every problem."""

from __future__ import annotations

import unicodedata

NON_LATIN_SCRIPTS: dict[str, tuple[str, ...]] = {
    "zh": ("CJK",),
    "ja": ("CJK", "HIRAGANA", "KATAKANA"),
    "ko": ("HANGUL",),
    "ru": ("CYRILLIC",),
    "th": ("THAI",),
}
"""Unicode character-name prefixes every letter of a language's text must have."""

HAN_MARKS = frozenset("々〆")
"""Ideographic iteration and closing marks: letters of the Han writing system without a CJK name."""


def foreign_letters(text: str, prefixes: tuple[str, ...], allowed: frozenset[str] = HAN_MARKS) -> str:
    """The distinct letters of ``text`` whose Unicode name starts with none of ``prefixes``."""
    foreign = (c for c in text if c.isalpha() and c not in allowed and not unicodedata.name(c, "").startswith(prefixes))
    return "".join(dict.fromkeys(foreign))


def assert_no_problems(problems: list[str], shown: int | None = None) -> None:
    """Fails with the number of problems and the first ``shown`` of them (all by default)."""
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems[:shown])
