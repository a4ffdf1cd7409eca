"""Payment agents and the registry layouts staff describe."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction

from payments.exceptions import ValidationFailed
from payments.formats import ISO, Layout, layout_problems
from payments.models import PaymentAgent, RegistryFormat, RegistryLayout


@transaction.atomic
def registry_layout_create(*, name: str, **fields: Any) -> RegistryLayout:
    """Store a layout after checking that it can read files (``layout_problems``)."""
    layout = RegistryLayout(name=name, **fields)
    problems = layout_problems(
        Layout(
            name=name,
            encoding=layout.encoding,
            delimiter=layout.delimiter,
            columns=layout.columns,
            quoted=layout.quoted,
            decimal_separator=layout.decimal_separator,
            date_format=layout.date_format or ISO,
            header_lines=layout.header_lines,
            footer_lines=layout.footer_lines,
            control_line=layout.control_line,
            control_prefix=layout.control_prefix,
            control_columns=layout.control_columns or {},
        )
    )
    if problems:
        raise ValidationFailed("The layout cannot read files.", **problems)
    layout.save()
    return layout


@transaction.atomic
def payment_agent_create(
    *,
    code: str,
    name: str,
    format: str,
    commission_rate: Decimal | str = Decimal("0"),
    layout: RegistryLayout | None = None,
    currency: str = "RUB",
) -> PaymentAgent:
    """A new payment agent; a ``custom`` format needs a layout, a built-in one has none."""
    if format not in RegistryFormat.values:
        raise ValidationFailed(
            f"Unknown format {format!r}.", format=[f"One of {', '.join(RegistryFormat.values)}."]
        )
    if (format == RegistryFormat.CUSTOM) != (layout is not None):
        raise ValidationFailed(
            "A custom format needs a layout; a built-in one has none.",
            layout=["Required for the custom format only."],
        )
    rate = Decimal(str(commission_rate))
    if not (Decimal("0") <= rate <= Decimal("100")) or rate.as_tuple().exponent < -2:
        raise ValidationFailed(
            "The commission rate is a percentage from 0 to 100 with at most two decimals.",
            commission_rate=["From 0 to 100, at most two decimals."],
        )
    try:
        with transaction.atomic():
            return PaymentAgent.objects.create(
                code=code,
                name=name,
                format=format,
                commission_rate=rate,
                layout=layout,
                currency=currency,
            )
    except IntegrityError:
        raise ValidationFailed(
            f"An agent with code {code!r} exists.", code=["An agent with this code exists."]
        ) from None
