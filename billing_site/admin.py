"""The admin site: Django's, with every model admin guarded against unstorable text.

Installed through ``billing_site.apps.BillingAdminConfig`` (in ``INSTALLED_APPS`` in
place of ``django.contrib.admin``), so ``django.contrib.admin.site`` is this site and
``@admin.register`` in every app, and in installed packages, goes through ``register``.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin

from core.forms import TextGuardedAdmin


def text_guarded_admin(admin_class: type[admin.ModelAdmin]) -> type[admin.ModelAdmin]:
    """``admin_class`` with ``TextGuardedAdmin`` mixed in first (a subclass, same name)."""
    if issubclass(admin_class, TextGuardedAdmin):
        return admin_class
    return type(
        admin_class.__name__,
        (TextGuardedAdmin, admin_class),
        {"__module__": admin_class.__module__, "__doc__": admin_class.__doc__},
    )


class BillingAdminSite(admin.AdminSite):
    def register(self, model_or_iterable: Any, admin_class: Any = None, **options: Any) -> None:
        guarded = text_guarded_admin(admin_class or admin.ModelAdmin)
        super().register(model_or_iterable, guarded, **options)
