"""django-q2 tasks of the partners app: webhook delivery. Thin: each calls one service.
Each runs again when its database connection is lost (core.faults).
"""

from django.conf import settings
from django_q.models import Schedule
from django_q.tasks import async_task

from core.faults import retry_on_lost_connection
from partners.services import webhook_deliver, webhooks_deliver_due


@retry_on_lost_connection
def deliver_webhook(delivery_id: int) -> bool:
    """One attempt of one delivery (queued on commit of the event's transaction)."""
    return webhook_deliver(delivery_id=delivery_id) is not None


@retry_on_lost_connection
def deliver_due_webhooks() -> int:
    """Retry every delivery whose backoff has passed (and any whose queued task was lost)."""
    return webhooks_deliver_due()


def enqueue_delivery(delivery_id: int) -> None:
    if settings.BILLING_WEBHOOK_ENQUEUE:
        async_task("partners.tasks.deliver_webhook", delivery_id, group="webhooks")


# Picked up by ``manage.py ensure_schedules``.
SCHEDULES = [
    {
        "name": "partners: retry due webhook deliveries",
        "func": "partners.tasks.deliver_due_webhooks",
        "schedule_type": Schedule.MINUTES,
        "minutes": 1,
    },
]
