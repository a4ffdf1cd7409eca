from django.core.management.base import BaseCommand, CommandError

from core.errors import DomainError
from invoicing.services import invoice_recalculate


class Command(BaseCommand):
    help = "Re-rate a billed period of an account and issue the difference as an adjustment."

    def add_arguments(self, parser):
        parser.add_argument("--account", type=int, required=True, help="Account id.")
        parser.add_argument("--period", required=True, help="YYYY-MM")

    def handle(self, *args, account, period, **options):
        try:
            adjustments = invoice_recalculate(account=account, period=period)
        except DomainError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from None
        if not adjustments:
            self.stdout.write("Nothing changed.")
        for adjustment in adjustments:
            self.stdout.write(f"{adjustment.number}: {adjustment.total} ({adjustment.status})")
