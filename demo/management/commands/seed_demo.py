"""``manage.py seed_demo``: load demo data through the real services (see ``demo.seed``)."""

from django.core.management.base import BaseCommand, CommandError

from demo.seed import demo_data_exists, seed_demo


class Command(BaseCommand):
    help = (
        "Load demo data: admin/admin, operator/operator and accountant/accountant users, three"
        " brands with catalogue and tariffs, clients, accounts, sub-accounts, six months of"
        " ledger history and last month's issued invoices with their PDFs."
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
        parser.add_argument(
            "--workers", type=int, default=2, help="Threads posting history and invoice chunks."
        )
        parser.add_argument(
            "--pdf-limit",
            type=int,
            default=10000,
            help="Invoice PDFs rendered here; the rest by the q2 tasks the issue queued.",
        )

    def handle(self, *args, clients: int, seed: int, if_empty: bool, **options):
        if clients < 0:
            raise CommandError("--clients must not be negative.")
        if options["workers"] < 1:
            raise CommandError("--workers must be at least 1.")
        if if_empty and demo_data_exists():
            self.stdout.write("Clients already exist; demo data not loaded (--if-empty).")
            return
        verbose = options["verbosity"] > 1
        result = seed_demo(
            clients=clients,
            seed=seed,
            workers=options["workers"],
            pdf_limit=options["pdf_limit"],
            log=self.stdout.write if verbose else None,
        )
        self.stdout.write(self.style.SUCCESS(f"Demo data loaded: {result.summary()}"))
