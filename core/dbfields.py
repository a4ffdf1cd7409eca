"""Database field types shared by several apps (no app imported here)."""

from django.db import models
from django.db.models import Func


class TransactionIdField(models.Field):
    """A PostgreSQL ``xid8``: the full id of the transaction that wrote a row.

    Rows that carry theirs (column default ``pg_current_xact_id()``) can be followed in
    commit order rather than by clocks or by id: a reader records the snapshot it saw
    (``pg_current_snapshot()``); a row whose transaction is visible in that snapshot was
    seen, any other row is new to it, whenever it commits. Usage records and meter
    readings (recalculation) and ledger transactions (the report projections) use it.
    """

    description = "PostgreSQL full transaction id (xid8)"

    def db_type(self, connection) -> str:
        return "xid8"


def current_transaction_id() -> Func:
    return Func(function="pg_current_xact_id", output_field=TransactionIdField())
