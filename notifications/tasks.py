"""django-q2 tasks of the email outbox. Thin: each calls one service.
Each runs again when its database connection is lost (core.faults).
"""

from collections.abc import Sequence

from django.conf import settings
from django_q.models import Schedule
from django_q.tasks import async_task

from core.faults import retry_on_lost_connection
from notifications import services


@retry_on_lost_connection
def send_emails(message_ids: list[int]) -> int:
    """Send these outbox messages now (queued on commit of the transaction that wrote them)."""
    return services.emails_send(ids=message_ids)


@retry_on_lost_connection
def send_due_emails() -> int:
    """Retry messages whose backoff is over, and any whose queued task was lost."""
    return services.emails_send_due()


SEND_BATCH = 100  # messages per task: one SMTP connection each, well inside the q2 timeout


def enqueue_send(message_ids: Sequence[int]) -> None:
    ids = list(message_ids)
    sync = bool(settings.Q_CLUSTER.get("sync", False))
    for start in range(0, len(ids), SEND_BATCH):
        batch = ids[start : start + SEND_BATCH]
        async_task("notifications.tasks.send_emails", batch, group="emails", sync=sync)


# Picked up by ``manage.py ensure_schedules``.
SCHEDULES = [
    {
        "name": "notifications: send due emails",
        "func": "notifications.tasks.send_due_emails",
        "schedule_type": Schedule.MINUTES,
        "minutes": 1,
    },
]
