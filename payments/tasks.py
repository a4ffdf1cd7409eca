"""django-q2 tasks of payment intake. Thin: each calls one service."""

from django_q.models import Schedule

from payments.services.gateway import gateway_call_attempt, gateway_calls_due, payment_intents_poll
from payments.services.refunds import refund_saga_run, refund_sagas_resume


def gateway_call(call_id: int) -> bool:
    """One attempt of one outbound gateway call (queued on commit of its transaction)."""
    return gateway_call_attempt(call_id=call_id) is not None


def gateway_retry_due() -> int:
    """Retry every call whose backoff has passed (and any whose queued task was lost)."""
    return gateway_calls_due()


def gateway_poll() -> int:
    """Settle intents whose callback never came, by asking the gateway."""
    return payment_intents_poll()


def refund_saga(saga_id: int) -> str:
    return refund_saga_run(saga=saga_id).status


def refund_sagas() -> int:
    """Carry on unfinished refund sagas (after a crash or a lost task)."""
    return refund_sagas_resume()


# Picked up by ``manage.py ensure_schedules``.
SCHEDULES = [
    {
        "name": "payments: retry due gateway calls",
        "func": "payments.tasks.gateway_retry_due",
        "schedule_type": Schedule.MINUTES,
        "minutes": 1,
    },
    {
        "name": "payments: poll pending gateway payments",
        "func": "payments.tasks.gateway_poll",
        "schedule_type": Schedule.MINUTES,
        "minutes": 2,
    },
    {
        "name": "payments: resume refund sagas",
        "func": "payments.tasks.refund_sagas",
        "schedule_type": Schedule.MINUTES,
        "minutes": 5,
    },
]
