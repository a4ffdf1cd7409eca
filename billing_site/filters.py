"""Filter building blocks shared by the apps' FilterSets (``<app>/filtersets.py``)."""

from typing import Any

import django_filters
from django import forms

MAX_ID = 2**63 - 1


class IdFilter(django_filters.Filter):
    """An integer id compared as is: no lookup of the referenced object, so a filter on
    an id outside the caller's scope gives an empty list, never an error that tells."""

    field_class = forms.IntegerField

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_ID)
        super().__init__(*args, **kwargs)


class AmountFilter(django_filters.NumberFilter):
    """A money bound: finite, at most 18 digits with 2 decimals."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max_digits", 18)
        kwargs.setdefault("decimal_places", 2)
        super().__init__(*args, **kwargs)
