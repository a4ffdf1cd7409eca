"""django-q2 tasks of invoicing. Thin: each calls one service and returns a small summary.
Each runs again when its database connection is lost (core.faults).
"""

from datetime import datetime, time, timedelta

from django.utils import timezone
from django_q.models import Schedule

from core.faults import retry_on_lost_connection
from invoicing import services


@retry_on_lost_connection
def invoice_run_plan(run_id: int) -> str:
    return services.invoice_run_plan(run_id=run_id).status


@retry_on_lost_connection
def invoice_run_chunk(chunk_id: int) -> int:
    chunk = services.invoice_run_chunk_process(chunk_id=chunk_id)
    return 0 if chunk is None else chunk.processed


@retry_on_lost_connection
def invoice_run_monthly() -> int:
    return services.invoice_run_start_scheduled().pk


@retry_on_lost_connection
def penalties_daily() -> int:
    return services.penalties_accrue().accrued


@retry_on_lost_connection
def invoice_documents_deliver(invoice_ids: list[int]) -> int:
    """Render and store a chunk of issued invoices' PDFs, then queue their emails."""
    from invoicing import documents

    return documents.invoice_documents_deliver(invoice_ids=invoice_ids)


def _next_local(day_offset: int, at: time, first_of_month: bool = False) -> datetime:
    today = timezone.localdate()
    if first_of_month:
        day = (today.replace(day=1) + timedelta(days=32)).replace(day=1)
    else:
        day = today + timedelta(days=day_offset)
    return timezone.make_aware(datetime.combine(day, at))


# Picked up by ``manage.py ensure_schedules``.
SCHEDULES = [
    {
        "name": "invoicing: monthly invoice run",
        "func": "invoicing.tasks.invoice_run_monthly",
        "schedule_type": Schedule.MONTHLY,
        "repeats": -1,
        "next_run": _next_local(0, time(3, 0), first_of_month=True),
    },
    {
        "name": "invoicing: daily penalties",
        "func": "invoicing.tasks.penalties_daily",
        "schedule_type": Schedule.DAILY,
        "repeats": -1,
        "next_run": _next_local(1, time(2, 0)),
    },
]
