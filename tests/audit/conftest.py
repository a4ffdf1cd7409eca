"""Helpers for the audit trail tests: what events a block of code wrote, and admin forms."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from django.db.models import Max
from django.utils import timezone

from access.models import ApiKeyEvent
from accounts.models import AccountEvent, ClientEvent
from brands.models import BrandEvent
from invoicing.models import TariffEvent, TariffTierEvent
from partners.models import ApiKeyBrandEvent
from tests.api.conftest import make_side
from tests.factories import UserFactory

EVENT_MODELS = [
    AccountEvent,
    ClientEvent,
    BrandEvent,
    TariffEvent,
    TariffTierEvent,
    ApiKeyEvent,
    ApiKeyBrandEvent,
]


class Written:
    """The audit events written inside a ``written()`` block, per event model, oldest first."""

    def __init__(self) -> None:
        self.before = {m: m.objects.aggregate(top=Max("pgh_id"))["top"] or 0 for m in EVENT_MODELS}
        self.started = timezone.now()
        self.events: dict[Any, list[Any]] = {}

    def collect(self) -> None:
        self.events = {
            model: list(
                model.objects.filter(pgh_id__gt=self.before[model])
                .select_related("pgh_context")
                .order_by("pgh_id")
            )
            for model in EVENT_MODELS
        }

    def of(self, model: Any) -> list[Any]:
        return self.events[model]

    @property
    def total(self) -> int:
        return sum(len(events) for events in self.events.values())

    def only(self, model: Any, label: str = "change") -> Any:
        """The one event written in the block (asserting it was the only one of any kind)."""
        assert self.total == 1, {
            m.__name__: [e.pgh_diff for e in es] for m, es in self.events.items() if es
        }
        (event,) = self.events[model]
        assert event.pgh_label == label
        assert self.started - timedelta(seconds=5) <= event.pgh_created_at <= timezone.now()
        return event


@contextmanager
def written():
    record = Written()
    yield record
    record.collect()


def metadata(event: Any) -> dict[str, Any]:
    assert event.pgh_context_id is not None, "the event names no actor"
    return event.pgh_context.metadata


@pytest.fixture
def staff_user(db):
    user = UserFactory(is_staff=True, is_superuser=True, username="auditor")
    user.save()
    return user


@pytest.fixture
def staff(client, staff_user):
    client.force_login(staff_user)
    client.user = staff_user
    return client


@pytest.fixture
def side(db):
    return make_side("Audit Partner")


def admin_form_data(response) -> dict[str, Any]:
    """The POST body of an admin change page as it stands: its form and inline formsets."""
    data: dict[str, Any] = {}

    def add(form: Any) -> None:
        for name, field in form.fields.items():
            if field.disabled:
                continue
            value = form[name].value()
            key = form.add_prefix(name)
            if isinstance(value, bool):
                if value:
                    data[key] = "on"
            elif isinstance(value, list | tuple):
                data[key] = [str(v) for v in value]
            else:
                data[key] = "" if value is None else str(value)

    add(response.context["adminform"].form)
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        add(formset.management_form)
        for form in formset.forms:
            add(form)
    return data
