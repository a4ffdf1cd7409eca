"""``manage.py seed_demo``: load demo data (see ``ledger.demo``).

It lives in the ledger app because demo data spans brands, accounts and the
ledger, and dependencies point one way (``brands <- accounts <- ledger``).
"""

from django.core.management.base import BaseCommand, CommandError

from core.db import as_database_owner
from ledger.demo import demo_data_exists, seed_demo


class Command(BaseCommand):
    help = (
        "Load demo data: admin/admin and operator users, three brands with their catalogue, "
        "clients, accounts, sub-accounts and six months of ledger history."
    )

    def add_arguments(self, parser):
        parser.add_argument("--clients", type=int, default=2000, help="How many clients.")
        parser.add_argument(
            "--seed", type=int, default=42, help="Random seed (same seed, same data)."
        )
        parser.add_argument(
            "--if-empty",
            action="store_true",
            help="Do nothing when the database already has clients.",
        )

    def handle(self, *args, clients: int, seed: int, if_empty: bool, **options):
        if clients < 0:
            raise CommandError("--clients must not be negative.")
        if if_empty and demo_data_exists():
            self.stdout.write("Clients already exist; demo data not loaded (--if-empty).")
            return
        verbose = options["verbosity"] > 1
        # The bulk load drops and re-creates the ledger's indexes and foreign keys (DDL):
        # the owner's work, not the runtime role's (core.db).
        with as_database_owner():
            result = seed_demo(
                clients=clients, seed=seed, log=self.stdout.write if verbose else None
            )
        self.stdout.write(self.style.SUCCESS(f"Demo data loaded: {result.summary()}"))
