"""What text may hold: the one rule every way into the system applies.

PostgreSQL text cannot hold a NUL character, and an unpaired UTF-16 surrogate
(``"\\ud800"`` in JSON) is not Unicode at all: neither can be stored, printed
or sent on. Every text input refuses both with a clear message and a stable
code: API fields and query parameters (``core.api``), staff forms and the
admin (``core.forms``), CSV and record ingest (``invoicing.ingest``) and
spreadsheet imports. Over-long values are refused where the column's length
is known, before the database sees them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.core.exceptions import ValidationError

NUL_CODE = "null_characters_not_allowed"
SURROGATE_CODE = "surrogate_characters_not_allowed"
NUL_MESSAGE = "Null characters are not allowed."
SURROGATE_MESSAGE = "Unpaired surrogate characters are not allowed (the text is not valid Unicode)."


def has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def text_problem(text: str) -> tuple[str, str] | None:
    """``(code, message)`` when ``text`` cannot be stored, else None."""
    if "\x00" in text:
        return NUL_CODE, NUL_MESSAGE
    if has_surrogate(text):
        return SURROGATE_CODE, SURROGATE_MESSAGE
    return None


def check_text(text: str) -> None:
    """Raise Django's ``ValidationError`` (with the stable code) for unstorable text."""
    problem = text_problem(text)
    if problem is not None:
        code, message = problem
        raise ValidationError(message, code=code)


def printable(text: str) -> str:
    """``text`` safe to show or encode: unpaired surrogates and NULs written as escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def bad_strings(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], str]]:
    """Every ``(path, code)`` in parsed JSON where a string (a value or a key) cannot be
    stored; the path leads to it from the top (keys and list indexes)."""
    if isinstance(value, str):
        problem = text_problem(value)
        if problem is not None:
            yield path, problem[0]
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and text_problem(key) is not None:
                yield (*path, key), text_problem(key)[0]
            yield from bad_strings(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from bad_strings(item, (*path, index))
