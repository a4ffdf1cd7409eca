"""JSON parsing that keeps money exact and refuses what JSON should not carry."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.parsers import JSONParser

from core.text import SURROGATE_CODE, SURROGATE_MESSAGE, bad_strings, printable


class _Float(Decimal):
    """A JSON number written with a fraction or exponent; serializers refuse it for money."""


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _refuse_lone_surrogates(data: Any) -> None:
    """A lone surrogate cannot be stored nor even echoed back in an error: refuse the body,
    naming the field (``{"memo": [...]}``; nested: ``{"records": ["records[3].external_id:
    ..."]}``). NUL characters are valid JSON and left to the fields, which refuse them."""
    for path, code in bad_strings(data):
        if code != SURROGATE_CODE:
            continue
        where = "".join(
            f"[{step}]" if isinstance(step, int) else f".{printable(step)}" for step in path
        ).removeprefix(".")
        if path and isinstance(path[0], str):
            field = printable(path[0])
            message = SURROGATE_MESSAGE if len(path) == 1 else f"{where}: {SURROGATE_MESSAGE}"
        else:  # the body itself, or an item of a top-level list
            field = "non_field_errors"
            message = f"{where}: {SURROGATE_MESSAGE}" if path else SURROGATE_MESSAGE
        raise ValidationError({field: [message]}, code=code)


class StrictJSONParser(JSONParser):
    """Numbers with a fraction become ``Decimal`` (never float); NaN/Infinity are refused."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", "utf-8")
        try:
            text = stream.read().decode(encoding) if stream is not None else ""
            data = json.loads(text, parse_float=_Float, parse_constant=_refuse_constant)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise ParseError(f"Malformed JSON: {exc}") from None
        _refuse_lone_surrogates(data)
        return data


def is_json_float(value: Any) -> bool:
    return isinstance(value, float | _Float)
