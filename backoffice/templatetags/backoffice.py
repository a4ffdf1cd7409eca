"""Template filters of the staff UI: money in the user's locale, permissions in templates."""

from __future__ import annotations

from typing import Any

from django import template

from core.ui import format_money, user_may

register = template.Library()


@register.filter
def money(value: Any, currency: str = "") -> str:
    """``{{ amount|money:currency }}``: see ``core.ui.format_money``."""
    return format_money(value, currency)


@register.filter
def may(user: Any, permissions: str) -> bool:
    """``{% if user|may:"ledger.post_payment,ledger.post_debit" %}``: holds all of them."""
    return user_may(user, *[p.strip() for p in permissions.split(",") if p.strip()])
