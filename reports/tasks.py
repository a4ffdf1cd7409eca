"""django-q2 tasks of reports. Thin: each calls one service and returns a small summary."""

from datetime import timedelta

from django.utils import timezone
from django_q.models import Schedule

from reports import projections

# A run stops starting new batches after this long; the next scheduled run goes on.
PROJECT_MAX_SECONDS = 45


def reports_project() -> int:
    """Fold new ledger entries into the projections; the number of entries folded."""
    return projections.projections_update(max_seconds=PROJECT_MAX_SECONDS).entries


# Picked up by ``manage.py ensure_schedules``.
SCHEDULES = [
    {
        "name": "reports: follow the ledger",
        "func": "reports.tasks.reports_project",
        "schedule_type": Schedule.MINUTES,
        "minutes": 1,
        "repeats": -1,
        "next_run": timezone.now() + timedelta(seconds=5),
    },
]
