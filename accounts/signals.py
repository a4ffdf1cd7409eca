"""Signals sent inside the database transaction that changed an account."""

from django.dispatch import Signal

# kwargs: account (accounts.models.Account), previous_status (str), changed_by (user or None)
account_status_changed = Signal()
