"""Create the runtime role and grant it exactly RUNTIME_PRIVILEGES (billing_site/database.py)."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, connections, transaction

from billing_site.database import RoleSetupError, setup_runtime_role
from core.db import as_database_owner


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS)
        parser.add_argument(
            "--role",
            help="the runtime role (default: the user of DATABASE_URL)",
        )
        parser.add_argument("--password", help="its password when it has to be created")

    def handle(self, *args, database: str, role: str | None, password: str | None, **options):
        runtime = settings.DATABASES[database]
        owner = settings.BILLING_DATABASE_OWNER
        role = role or runtime.get("USER")
        if password is None and role == runtime.get("USER"):
            password = runtime.get("PASSWORD") or None
        if not role or role == owner.get("USER"):
            if options["verbosity"]:
                self.stdout.write(
                    "One role for migrations and runtime (DATABASE_URL = MIGRATION_DATABASE_URL):"
                    " no runtime role to set up."
                )
            return
        with as_database_owner(database), transaction.atomic(using=database):
            try:
                with connections[database].cursor() as cursor:
                    warnings = setup_runtime_role(cursor, role=role, password=password)
            except RoleSetupError as exc:
                raise CommandError(str(exc)) from exc
        for warning in warnings:
            self.stderr.write(f"warning: {warning}")
        if options["verbosity"]:
            self.stdout.write(f"Runtime role {role}: privileges granted.")
