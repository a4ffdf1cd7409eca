from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import pagination
from rest_framework.exceptions import ValidationError


class CursorPagination(pagination.CursorPagination):
    """``{"next", "previous", "results"}``; the view's ``ordering`` decides the order."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500
    ordering = "-id"
    invalid_cursor_message = "Invalid cursor."

    def paginate_queryset(self, queryset: Any, request: Any, view: Any = None) -> Any:
        try:
            return super().paginate_queryset(queryset, request, view)
        except (ValueError, TypeError, DjangoValidationError, OverflowError):
            # A well-formed cursor whose position does not fit the ordering field.
            raise ValidationError({"cursor": [self.invalid_cursor_message]}) from None

    def decode_cursor(self, request: Any) -> Any:
        try:
            return super().decode_cursor(request)
        except Exception as exc:  # NotFound, binascii.Error, UnicodeDecodeError
            if isinstance(exc, ValidationError):
                raise
            raise ValidationError({"cursor": [self.invalid_cursor_message]}) from None

    def get_page_size(self, request: Any) -> int:
        try:
            return super().get_page_size(request)
        except (OverflowError, ValueError):
            return self.page_size
