import time

from django.core.management.base import BaseCommand, CommandError

from reports.projections import projections_rebuild


class Command(BaseCommand):
    help = "Empty the report projections and build them again from the whole ledger (one commit)."

    def handle(self, *args, **options):
        started = time.monotonic()
        run = projections_rebuild()
        if run.busy:
            raise CommandError("The projector is running right now; try again in a moment.")
        self.stdout.write(
            self.style.SUCCESS(
                f"projections rebuilt: {run.transactions} transactions, {run.entries} entries"
                f" in {time.monotonic() - started:.2f}s"
            )
        )
