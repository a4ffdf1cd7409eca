"""Reports read on a real streaming replica while postings go to the primary.

``tests/reports/replica.py`` starts a primary and a ``pg_basebackup`` hot standby of
it on free ports (the machine's own server may refuse replication connections); the
scenario runs in a subprocess whose ``default`` database is that primary and whose
``reporting`` database is the standby. Skipped only when no PostgreSQL binaries exist.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from tests.reports.replica import pg_bin, primary_and_replica

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.replica,
    pytest.mark.skipif(
        pg_bin() is None or not (pg_bin() / "pg_basebackup").exists(),
        reason="no PostgreSQL binaries (initdb, pg_ctl, pg_basebackup) on this machine",
    ),
]


@pytest.fixture
def replica_pair(django_db_setup, django_db_blocker):
    """A temporary primary with the test database's schema, and its streaming replica."""
    with django_db_blocker.unblock():
        settings = connection.settings_dict
        source = (
            f"postgres://{settings['USER']}@{settings['HOST'] or '127.0.0.1'}:"
            f"{settings['PORT'] or 5432}/{settings['NAME']}"
        )
    with primary_and_replica(source) as pair:
        yield pair


def test_reports_read_on_the_replica_while_postings_go_to_the_primary(replica_pair):
    primary, replica = replica_pair
    env = {
        **os.environ,
        "DATABASE_URL": primary.url(),
        "REPORTING_DATABASE_URL": replica.url(),
        "DJANGO_SETTINGS_MODULE": "billing_site.settings",
    }
    done = subprocess.run(
        [sys.executable, "-m", "tests.reports.replica_scenario"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["primary"] == {"in_recovery": False, "port": primary.port}
    assert seen["reporting"] == {"in_recovery": True, "port": replica.port}
    # The figures the reports read on the standby are the postings made on the primary.
    assert seen["turnover"] == [
        {
            "key": seen["account"],
            "currency": "RUB",
            "opening": "0.00",
            "credit": "100.00",
            "debit": "30.00",
            "closing": "70.00",
        }
    ]
    assert seen["statement"] == {"opening": "0.00", "closing": "70.00", "entries": 2}
    assert seen["yesterday_rows"] == 0
    assert seen["pending_on_replica"] == 1
    assert "read-only" in seen["write_on_reporting"]
