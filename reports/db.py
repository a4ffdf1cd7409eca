"""Where report queries run: the ``reporting`` database alias.

``REPORTING_DATABASE_URL`` points it at a streaming replica; by default it is the
primary itself. Every report reads through ``reporting_alias()``; the projector,
which writes, uses ``default``. On a replica the projections are as fresh as the
replay: the lag shown (``reports.selectors.projection_lag``) is read there too.
"""

from __future__ import annotations

from django.conf import settings

REPORTING = "reporting"


def reporting_alias() -> str:
    return REPORTING if REPORTING in settings.DATABASES else "default"
