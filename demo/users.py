"""Demo users in the staff roles of the back-office (``backoffice.roles``).

``demo_users_ensure`` is the only function here that creates users; the roles (groups and
their permissions) are the back-office's own, created by ``ensure_roles``, so the demo's
operator and accountant may do exactly what any operator and accountant may.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model

from backoffice.roles import ACCOUNTANT, ADMINISTRATOR, OPERATOR, ensure_roles, role_assign

# username -> (password, e-mail, superuser, role)
USERS = {
    "admin": ("admin", "admin@example.com", True, ADMINISTRATOR),
    "operator": ("operator", "operator@example.com", False, OPERATOR),
    "accountant": ("accountant", "accountant@example.com", False, ACCOUNTANT),
}


@dataclass(frozen=True)
class DemoUsers:
    admin: Any
    operator: Any
    accountant: Any


def demo_users_ensure() -> DemoUsers:
    """The demo users (admin/admin superuser and administrator, operator/operator,
    accountant/accountant) in their roles; existing users keep their passwords."""
    ensure_roles()
    users = get_user_model().objects
    made = {}
    for username, (password, email, superuser, role) in USERS.items():
        user = users.filter(username=username).first()
        if user is None and superuser:
            user = users.create_superuser(username, email, password)
        elif user is None:
            user = users.create_user(username, email, password, is_staff=True)
        role_assign(user, role)
        made[username] = user
    return DemoUsers(**made)
