import sys

from django.core.management.base import BaseCommand

from reports.projections import projections_check
from reports.selectors import projection_lag


class Command(BaseCommand):
    help = (
        "Compare the report projections with the ledger as of their marker; exit 1 with the"
        " differences when they disagree."
    )

    def handle(self, *args, **options):
        problems = projections_check()
        for problem in problems:
            self.stderr.write(self.style.ERROR(problem))
        if problems:
            sys.exit(1)
        lag = projection_lag()
        self.stdout.write(
            self.style.SUCCESS(
                f"projections agree with the ledger ({lag.projected_entries} entries);"
                f" {lag.pending_transactions} transactions pending, lag {lag.lag_seconds:.1f}s"
            )
        )
