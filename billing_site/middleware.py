"""The staff UI in the user's language and with its messages; the partner API always in the
project's own language, and without messages."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.messages.middleware import MessageMiddleware
from django.middleware.locale import LocaleMiddleware
from django.utils import translation


class StaffLocaleMiddleware(LocaleMiddleware):
    """Django's ``LocaleMiddleware`` (language cookie set by ``set_language``, then
    ``Accept-Language``), except under ``/api/``: the partner API's messages and formats
    stay in ``LANGUAGE_CODE`` whatever a client's headers say."""

    def process_request(self, request: Any) -> None:
        if request.path_info.startswith("/api/"):
            translation.activate(settings.LANGUAGE_CODE)
            request.LANGUAGE_CODE = translation.get_language()
            return
        super().process_request(request)

    def process_response(self, request: Any, response: Any) -> Any:
        if request.path_info.startswith("/api/"):
            return response
        return super().process_response(request, response)


class StaffMessageMiddleware(MessageMiddleware):
    """Django's ``MessageMiddleware`` except under ``/api/``: the partner API shows no
    messages, so its requests do not build the cookie and session message stores (and a
    staff user's pending messages wait for the staff UI). Without ``request._messages``
    the response side does nothing either, and the template context processor reads none.
    """

    def process_request(self, request: Any) -> None:
        if request.path_info.startswith("/api/"):
            return
        super().process_request(request)
