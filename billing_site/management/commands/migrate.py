"""``migrate`` as the database owner, then the runtime role's privileges (setup_db_roles)."""

from django.core.management import call_command
from django.core.management.commands.migrate import Command as DjangoMigrate
from django.db import DEFAULT_DB_ALIAS

from core.db import as_database_owner


class Command(DjangoMigrate):
    help = DjangoMigrate.help + " Runs as the owner (MIGRATION_DATABASE_URL), then setup_db_roles."

    def check(self, *args, **kwargs):
        # The system checks run before handle() and may ask the server its version (some
        # constraints depend on it): on a fresh server the runtime role does not exist yet.
        with as_database_owner(DEFAULT_DB_ALIAS):
            return super().check(*args, **kwargs)

    def handle(self, *args, **options):
        database = options["database"]
        with as_database_owner(database):
            super().handle(*args, **options)
        call_command(
            "setup_db_roles",
            database=database,
            verbosity=options["verbosity"],
            stdout=self.stdout,
            stderr=self.stderr,
        )
