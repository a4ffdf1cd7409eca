"""Run in a subprocess by test_replica.py, with ``DATABASE_URL`` on the temporary primary
and ``REPORTING_DATABASE_URL`` on its streaming replica. Posts on the primary, projects,
waits for the replica to replay, reads the reports and prints what it saw as JSON."""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import timedelta

import django


def wait_for_replay(primary, replica) -> None:
    with primary.cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_lsn()::text")
        lsn = cursor.fetchone()[0]
    deadline = time.monotonic() + 60
    while True:
        with replica.cursor() as cursor:
            cursor.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [lsn])
            if cursor.fetchone()[0]:
                return
        if time.monotonic() > deadline:
            raise RuntimeError("the replica did not replay the postings in time")
        time.sleep(0.05)


def server(connection) -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_is_in_recovery(), inet_server_port()")
        recovery, port = cursor.fetchone()
    return {"in_recovery": recovery, "port": port}


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_site.settings")
    django.setup()
    from django.db import DatabaseError, connections
    from django.utils import timezone

    from core.api.scope import Scope
    from core.caller import SYSTEM
    from ledger.services import debit_post, payment_post
    from reports.models import DailyTurnover
    from reports.projections import projections_update
    from reports.selectors import projection_lag
    from reports.standard import statement, turnover
    from tests.factories import AccountFactory, BrandFactory

    staff = Scope(brand_ids=None, partner_id=None, caller=SYSTEM)
    primary, replica = connections["default"], connections["reporting"]
    brand = BrandFactory()
    account = AccountFactory(brands=[brand])
    payment_post(account=account, amount="100.00", channel="bank")
    debit_post(account=account, amount="30.00", brand=brand)
    projections_update()
    wait_for_replay(primary, replica)
    today = timezone.localdate()
    sheet = turnover(staff, date_from=today, date_to=today, group_by="account")
    statement_now = statement(staff, account, today, today)
    # A posting the replica has replayed but the projector has not folded in yet: the
    # lag read on the replica shows it.
    payment_post(account=account, amount="5.00", channel="card")
    wait_for_replay(primary, replica)
    lag = projection_lag()
    try:
        DailyTurnover.objects.using("reporting").update(entries=0)
        write = "accepted"
    except DatabaseError as exc:
        write = str(exc).splitlines()[0]
    result = {
        "primary": server(primary),
        "reporting": server(replica),
        "turnover": [{k: str(v) for k, v in row.items() if k != "id"} for row in sheet.rows],
        "statement": {
            "opening": str(statement_now.header["opening"]),
            "closing": str(statement_now.header["closing"]),
            "entries": len(list(statement_now.rows)),
        },
        "pending_on_replica": lag.pending_transactions,
        "write_on_reporting": write,
        "account": account.number,
        "yesterday_rows": len(
            turnover(
                staff, date_from=today - timedelta(days=1), date_to=today - timedelta(days=1)
            ).rows
        ),
    }
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
