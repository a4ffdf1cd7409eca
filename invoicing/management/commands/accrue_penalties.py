from datetime import date

from django.core.management.base import BaseCommand

from invoicing.services import penalties_accrue


class Command(BaseCommand):
    help = "Mark overdue invoices and accrue one day's penalties (what the daily schedule does)."

    def add_arguments(self, parser):
        parser.add_argument("--date", type=date.fromisoformat, help="Business day (default today).")

    def handle(self, *args, date, **options):
        outcome = penalties_accrue(on=date)
        self.stdout.write(
            f"{outcome.overdue_marked} invoice(s) became overdue; {outcome.accrued} penalty "
            f"accrual(s) totalling {outcome.amount}; {len(outcome.failures)} refused"
        )
