"""The bases of the API's serializers: strict text fields by default (model serializers), and
fields built once per class (the money POSTs' input serializers)."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.utils.functional import cached_property
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


# An input serializer whose fields are built and bound once per class, not per request.
# (A comment, not a docstring: the schema would show a docstring as every subclass's
# description.)
#
# DRF deep-copies every declared field (running each field's ``__init__`` again) and
# binds the copies to each new serializer: on a money POST that costs more than the
# validation itself. Validating a request body (no instance, no context, not partial),
# a field keeps no state of its own: it reads the data it is given and, for ``partial``
# and the context, its root serializer. So one set of fields, bound to a template
# instance of the class (not partial, empty context), serves every such request, in
# every thread, with the same results and errors. An instance, a context or ``partial``
# gets its own fields, as in DRF.
class SharedFieldsSerializer(serializers.Serializer):
    @cached_property
    def fields(self) -> Any:
        if self.instance is not None or self._context or self.partial:
            return serializers.Serializer.fields.func(self)
        cls = type(self)
        shared = cls.__dict__.get("_shared_fields")
        if shared is None:
            template = cls()
            shared = serializers.Serializer.fields.func(template)
            template.__dict__["fields"] = shared
            cls._shared_fields = shared
        return shared
