"""Who may call which endpoint: a key's capability, or a staff user's Django permission.

Every view declares what each of its actions needs, once, as a map from the
action (a viewset action such as ``"create"`` or ``"reverse"``, or the HTTP
method of a plain ``APIView``) to a key capability and a Django permission::

    required = {
        **reads("ledger.view_transaction"),
        "reverse": ("reversals", "ledger.reverse_transaction"),
    }

``ActionPermission`` (the API's default permission class) reads that map: a
partner's key must carry the capability, a staff session must hold the
permission (the same one the admin checks for that action; a ``view_``
permission is also satisfied by the model's ``change_`` permission, as in the
admin). An action missing from the map is refused: a new endpoint is closed
until someone says who may use it. ``STAFF_ONLY`` in place of a capability
closes an action to every key (approving a maker-checker request).
"""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission

from core.api.principal import ApiPrincipal

# (key capability, Django permission "app_label.codename")
Requirement = tuple[str, str]

READ_ACTIONS = ("list", "retrieve")
# Not a capability: no key carries it, so the action is for staff sessions only.
STAFF_ONLY = "staff_only"


def reads(permission: str, *actions: str) -> dict[str, Requirement]:
    """The ``read`` capability and a view permission for the given (default: list, retrieve)."""
    return {action: ("read", permission) for action in actions or READ_ACTIONS}


def user_has_permission(user: Any, permission: str) -> bool:
    """As the admin decides: ``view_<model>`` is also granted by ``change_<model>``."""
    if user.has_perm(permission):
        return True
    app_label, _, codename = permission.partition(".")
    if codename.startswith("view_"):
        return user.has_perm(f"{app_label}.change_{codename[len('view_') :]}")
    return False


def _action_of(request: Any, view: Any) -> str | None:
    """The key of ``view.required`` for this request; None when the method is not served
    (the view then answers 405 itself)."""
    if request.method.lower() not in view.http_method_names:
        return None
    if hasattr(view, "action_map"):  # a viewset: DRF resolved the action from the route
        action = getattr(view, "action", None)
        return None if action in (None, "metadata") else action
    method = "get" if request.method.lower() == "head" else request.method.lower()
    return method if hasattr(view, method) and method != "options" else None


def requirement_of(view: Any, action: str) -> Requirement | None:
    return getattr(view, "required", {}).get(action)


class ActionPermission(BasePermission):
    """A partner's API key with the action's capability, or a staff user with its permission.

    Anyone else (anonymous, a non-staff session) is refused; so is an action
    the view does not map (``required``).
    """

    message = "Only partners with an API key and staff users may use the API."

    def has_permission(self, request: Any, view: Any) -> bool:
        principal = request.auth
        user = request.user
        is_partner = isinstance(principal, ApiPrincipal)
        if not is_partner and not (
            user is not None and user.is_authenticated and getattr(user, "is_staff", False)
        ):
            return False
        action = _action_of(request, view)
        if action is None:
            return True  # not served: the view answers 405
        requirement = requirement_of(view, action)
        if requirement is None:
            self.message = f"No permission is declared for {action!r} on this endpoint."
            return False
        capability, permission = requirement
        if is_partner:
            if capability != STAFF_ONLY and principal.can(capability):
                return True
            self.message = (
                "Only staff users may do this, never an API key."
                if capability == STAFF_ONLY
                else f"This API key does not have the {capability!r} capability."
            )
            return False
        if user_has_permission(user, permission):
            return True
        self.message = f"You do not have the permission {permission!r}."
        return False
