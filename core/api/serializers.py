"""The base of the API's model serializers: strict text fields by default."""

from __future__ import annotations

from typing import Any

from django.db import models
from rest_framework import serializers

from core.api.fields import MetadataField, StrictCharField, StrictEmailField

# A text column without a length of its own (``TextField``) takes this many characters at most.
TEXT_MAX_LENGTH = 10_000


class StrictModelSerializer(serializers.ModelSerializer):
    """A ``ModelSerializer`` whose text fields are ``StrictCharField`` (a JSON string, no
    NUL characters, no unpaired surrogates) with a length limit (the column's, else
    ``TEXT_MAX_LENGTH``), and whose JSON fields are ``MetadataField`` (at most 16 KB)."""

    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.CharField: StrictCharField,
        models.TextField: StrictCharField,
        models.EmailField: StrictEmailField,
        models.JSONField: MetadataField,
    }

    def build_standard_field(self, field_name: str, model_field: Any) -> tuple[type, dict]:
        field_class, kwargs = super().build_standard_field(field_name, model_field)
        writable = not kwargs.get("read_only")
        if writable and issubclass(field_class, serializers.CharField):
            kwargs.setdefault("max_length", TEXT_MAX_LENGTH)
        return field_class, kwargs
