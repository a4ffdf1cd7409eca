"""django-q2 tasks of the ledger. Thin: each calls one service.
Each runs again when its database connection is lost (core.faults).
"""

from django_q.models import Schedule

from core.faults import retry_on_lost_connection
from ledger.services import holds_expire_due


@retry_on_lost_connection
def expire_holds() -> int:
    return holds_expire_due()


# Picked up by ``manage.py ensure_schedules`` (each app may declare its own).
SCHEDULES = [
    {
        "name": "ledger: expire holds",
        "func": "ledger.tasks.expire_holds",
        "schedule_type": Schedule.MINUTES,
        "minutes": 5,
    },
]
