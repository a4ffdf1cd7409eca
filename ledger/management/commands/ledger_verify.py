import sys
import time

from django.core.management.base import BaseCommand

from ledger.verify import CHECKS, verify_ledger


class Command(BaseCommand):
    help = "Check the ledger's invariants over the whole database; exit 1 with a report on failure."

    def add_arguments(self, parser):
        parser.add_argument("--database", default="default")

    def handle(self, *args, **options):
        started = time.monotonic()
        failures = verify_ledger(options["database"])
        elapsed = time.monotonic() - started
        for failure in failures:
            self.stderr.write(self.style.ERROR(str(failure)))
        passed = len(CHECKS) - len(failures)
        summary = f"{passed}/{len(CHECKS)} ledger checks passed in {elapsed:.2f}s"
        if failures:
            self.stderr.write(self.style.ERROR(summary))
            sys.exit(1)
        self.stdout.write(self.style.SUCCESS(summary))
