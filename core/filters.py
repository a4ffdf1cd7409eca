"""Filter building blocks shared by the apps' FilterSets (``<app>/filtersets.py``)."""

from typing import Any

import django_filters
from django import forms
from drf_spectacular.utils import extend_schema_field

MAX_ID = 2**63 - 1


@extend_schema_field({"type": "integer", "minimum": 1, "maximum": MAX_ID})
class IdFilter(django_filters.Filter):
    """An integer id compared as is: no lookup of the referenced object, so a filter on
    an id outside the caller's scope gives an empty list, never an error that tells."""

    field_class = forms.IntegerField

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_ID)
        super().__init__(*args, **kwargs)


@extend_schema_field({"type": "string", "format": "decimal", "pattern": r"^\d{1,16}(\.\d{1,2})?$"})
class AmountFilter(django_filters.NumberFilter):
    """A money bound: finite, at most 18 digits with 2 decimals."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max_digits", 18)
        kwargs.setdefault("decimal_places", 2)
        super().__init__(*args, **kwargs)
