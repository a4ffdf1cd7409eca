"""Reads of the reports app: how far behind the projections are."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import connections
from django.utils import timezone

from reports.db import reporting_alias
from reports.models import ProjectionState
from reports.projections import STATE_NAME


@dataclass(frozen=True)
class ProjectionLag:
    """What the projections do not hold yet, for the API and the staff screens."""

    built: bool
    pending_transactions: int
    oldest_pending_at: datetime | None
    lag_seconds: float
    last_run_at: datetime | None
    last_projected_at: datetime | None
    projected_entries: int


def projection_lag() -> ProjectionLag:
    """Ledger transactions committed but not yet in the projections, and how old the oldest is."""
    alias = reporting_alias()
    state = ProjectionState.objects.using(alias).filter(name=STATE_NAME).first()
    now = timezone.now()
    if state is None or not state.snapshot:
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT count(*), min(created_at) FROM ledger_transaction")
            pending, oldest = cursor.fetchone()
        return ProjectionLag(
            built=False,
            pending_transactions=pending,
            oldest_pending_at=oldest,
            lag_seconds=(now - oldest).total_seconds() if oldest else 0.0,
            last_run_at=None,
            last_projected_at=None,
            projected_entries=0,
        )
    with connections[alias].cursor() as cursor:
        cursor.execute(
            """
            SELECT count(*), min(created_at) FROM ledger_transaction t
             WHERE t.xact_id >= pg_snapshot_xmin(%(marker)s::pg_snapshot)
               AND NOT pg_visible_in_snapshot(t.xact_id, %(marker)s::pg_snapshot)
            """,
            {"marker": state.snapshot},
        )
        pending, oldest = cursor.fetchone()
    return ProjectionLag(
        built=True,
        pending_transactions=pending,
        oldest_pending_at=oldest,
        lag_seconds=max((now - oldest).total_seconds(), 0.0) if oldest else 0.0,
        last_run_at=state.last_run_at,
        last_projected_at=state.last_projected_at,
        projected_entries=state.entries,
    )
