"""``python manage.py import_registry --agent CODE FILE [--dry-run]``: import a registry file.

Prints the figures (and the row errors) and exits 1 when the file is refused.
"""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from core.caller import Caller
from core.errors import DomainError
from payments.models import PaymentAgent
from payments.services import registry_import


class Command(BaseCommand):
    help = "Import an agent's payment registry file (preview only with --dry-run)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--agent", required=True, help="The payment agent's code.")
        parser.add_argument("file", help="The registry file.")
        parser.add_argument(
            "--dry-run", action="store_true", help="Preview only: nothing is posted."
        )

    def handle(self, *args, **options) -> None:
        agent = PaymentAgent.objects.filter(code=options["agent"]).first()
        if agent is None:
            raise CommandError(f"No payment agent with code {options['agent']!r}.")
        path = Path(options["file"])
        try:
            content = path.read_bytes()
        except OSError as exc:
            raise CommandError(f"Cannot read {path}: {exc.strerror}.") from None
        try:
            registry = registry_import(
                agent=agent,
                file_name=path.name,
                content=content,
                dry_run=options["dry_run"],
                caller=Caller.system("import_registry"),
            )
        except DomainError as exc:
            for error in exc.details.get("errors", []):
                self.stderr.write(
                    f"line {error['row']}: {error['column'] or '-'}: {error['code']}: "
                    f"{error['message']}"
                )
            reason = exc.details.get("reason", exc.code)
            raise CommandError(f"{exc.message} ({reason})") from None
        for error in registry.errors:
            column = error["column"] or "-"
            self.stdout.write(f"line {error['row']}: {column}: {error['code']}: {error['message']}")
        self.stdout.write(
            f"registry {registry.pk} {registry.status}: {registry.rows} lines"
            f" ({registry.total_amount}); posted {registry.posted} ({registry.posted_amount});"
            f" suspense {registry.suspense} ({registry.suspense_amount});"
            f" duplicates {registry.duplicates}; commission {registry.commission};"
            f" errors {len(registry.errors)}"
        )
