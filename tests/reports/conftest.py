import pytest
from django.db import connections


@pytest.fixture(autouse=True)
def _reporting_reads_the_test_transaction():
    """Reports read through the ``reporting`` alias (a mirror of ``default`` in tests).

    A test that runs inside one transaction would not see its own rows through a second
    connection, so in this thread ``reporting`` is the ``default`` connection itself; the
    replica test (test_replica.py) uses a real second server instead.
    """
    previous = connections["reporting"]
    connections["reporting"] = connections["default"]
    yield
    connections["reporting"] = previous
