"""django-q2 tasks of the approvals app. Thin: each calls one service.
Each runs again when its database connection is lost (core.faults).
"""

from django_q.models import Schedule

from approvals.services import approvals_expire_due
from core.faults import retry_on_lost_connection


@retry_on_lost_connection
def expire_requests() -> int:
    return approvals_expire_due()


# Picked up by ``manage.py ensure_schedules``.
SCHEDULES = [
    {
        "name": "approvals: expire requests",
        "func": "approvals.tasks.expire_requests",
        "schedule_type": Schedule.MINUTES,
        "minutes": 5,
    },
]
