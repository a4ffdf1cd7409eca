from typing import Any

from rest_framework.permissions import BasePermission

from core.api.principal import ApiPrincipal


class IsPartnerOrStaff(BasePermission):
    """A partner's API key, or a logged-in staff user; anyone else is refused."""

    message = "Only partners with an API key and staff users may use the API."

    def has_permission(self, request: Any, view: Any) -> bool:
        if isinstance(request.auth, ApiPrincipal):
            return True
        user = request.user
        return bool(user is not None and user.is_authenticated and user.is_staff)
