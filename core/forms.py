"""Staff input (forms, the admin, spreadsheet imports) holds only text the database can store.

Django's form ``CharField`` already refuses NUL characters, but not every field is
a ``CharField``: a ``JSONField`` reads ``"\\u0000"`` into a NUL inside its value, a
choice or a model choice looks a raw value up before anything refuses it, and
searches, list filters and imports never meet a form field at all. Here:

* ``TextGuardedForm`` (a form mixin) checks every field's submitted value, before
  the field itself reads it (no query ever sees the text), and its cleaned value
  (nested JSON included): a NUL character or an unpaired surrogate is a form error
  on that field (codes ``null_characters_not_allowed``,
  ``surrogate_characters_not_allowed``);
* ``TextGuardedAdmin`` (a ``ModelAdmin`` mixin) gives every form the admin builds
  (add and change forms, inlines, list-editable rows) that guard, refuses such text
  in the changelist's search and filters (a message, nothing queried) and in
  autocomplete searches (no results), and gives spreadsheet imports
  ``TextGuardedResource``;
* ``TextGuardedResource`` (a django-import-export resource mixin) reports a row
  holding such text as an invalid row naming the column, in the dry run already.

``billing_site.admin.BillingAdminSite`` applies ``TextGuardedAdmin`` to every model
admin registered, the project's and the installed packages' alike.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpResponseRedirect

from core.text import (
    NUL_CODE,
    NUL_MESSAGE,
    SURROGATE_MESSAGE,
    bad_strings,
    check_text,
    printable,
    text_problem,
)


def _refuse_bad_text(value: Any) -> None:
    """Raise ``ValidationError`` (with the stable code) when ``value`` holds unstorable text:
    a string, or strings anywhere inside lists and dicts (keys too)."""
    if isinstance(value, str):
        check_text(value)
    elif isinstance(value, list | tuple | dict):
        found = next(bad_strings(list(value) if isinstance(value, tuple) else value), None)
        if found is not None:
            message = NUL_MESSAGE if found[1] == NUL_CODE else SURROGATE_MESSAGE
            raise ValidationError(message, code=found[1])


def guard_field(field: forms.Field) -> None:
    """Make this field instance refuse unstorable text, raw and cleaned."""
    if getattr(field, "_text_guarded", False):
        return
    read = field.clean

    def clean(value: Any, *args: Any, **kwargs: Any) -> Any:
        _refuse_bad_text(value)  # before the field looks anything up with it
        cleaned = read(value, *args, **kwargs)
        _refuse_bad_text(cleaned)  # what parsing produced (JSON's "\u0000" is a NUL)
        return cleaned

    field.clean = clean
    field._text_guarded = True


class TextGuardedForm:
    """A form mixin: every field refuses NUL characters and unpaired surrogates."""

    fields: dict[str, forms.Field]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            guard_field(field)


def text_guarded(form_class: type) -> type:
    """``form_class`` with ``TextGuardedForm`` mixed in (the same class if it has it)."""
    if issubclass(form_class, TextGuardedForm):
        return form_class
    return type(
        form_class.__name__,
        (TextGuardedForm, form_class),
        {"__module__": form_class.__module__, "__doc__": form_class.__doc__},
    )


def _guard_formset(formset_class: type) -> type:
    formset_class.form = text_guarded(formset_class.form)
    return formset_class


def bad_query_parameters(query: Any) -> list[str]:
    """The names of the query parameters (of a ``QueryDict``) holding unstorable text."""
    return [
        printable(name)
        for name, values in query.lists()
        if any(text_problem(text) is not None for text in [name, *values])
    ]


class TextGuardedResource:
    """A django-import-export resource mixin: a row with a NUL character or an unpaired
    surrogate in any column is an invalid row naming the column (dry run included),
    before anything is looked up or saved with it."""

    def before_import_row(self, row: Any, **kwargs: Any) -> None:
        errors = {}
        for column, value in row.items():
            problem = text_problem(value) if isinstance(value, str) else None
            if problem is not None:
                errors[printable(str(column))] = ValidationError(problem[1], code=problem[0])
        if errors:
            raise ValidationError(errors)
        super().before_import_row(row, **kwargs)


def text_guarded_resource(resource_class: type) -> type:
    if issubclass(resource_class, TextGuardedResource):
        return resource_class
    return type(
        resource_class.__name__,
        (TextGuardedResource, resource_class),
        {"__module__": resource_class.__module__, "__doc__": resource_class.__doc__},
    )


class TextGuardedAdmin:
    """A ``ModelAdmin`` mixin: the admin's forms, searches, filters and imports refuse
    NUL characters and unpaired surrogates (see the module docstring)."""

    message_user: Callable[..., None]

    def get_form(self, request: Any, obj: Any = None, **kwargs: Any):
        # ``change`` travels in kwargs: some admins (auth's UserAdmin) take no ``change``.
        return text_guarded(super().get_form(request, obj, **kwargs))

    def get_formsets_with_inlines(self, request: Any, obj: Any = None):
        for formset, inline in super().get_formsets_with_inlines(request, obj):
            yield _guard_formset(formset), inline

    def get_changelist_form(self, request: Any, **kwargs: Any):
        return text_guarded(super().get_changelist_form(request, **kwargs))

    def changelist_view(self, request: Any, extra_context: Any = None):
        bad = bad_query_parameters(request.GET)
        if bad:
            self.message_user(
                request,
                f"Searches and filters cannot contain NUL characters or unpaired surrogates"
                f" ({', '.join(bad)}); they were cleared.",
                messages.ERROR,
            )
            return HttpResponseRedirect(request.path)
        return super().changelist_view(request, extra_context)

    def get_search_results(self, request: Any, queryset: Any, search_term: str):
        if text_problem(search_term) is not None:
            return queryset.none(), False  # autocomplete: nothing matches such text
        return super().get_search_results(request, queryset, search_term)

    def get_import_resource_classes(self, request: Any):
        # Only django-import-export's import views ask (ImportMixin has the method).
        classes = super().get_import_resource_classes(request)  # type: ignore[misc]
        return [text_guarded_resource(cls) for cls in classes]
