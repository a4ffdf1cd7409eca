import json
import sys

from django.core.management.base import BaseCommand

from reports.spreadsheets import accounts_import


class Command(BaseCommand):
    help = (
        "Import accounts (with limits and payers) from a CSV or XLSX file: a dry run unless"
        " --apply; all rows or none. Prints JSON {rows, created, dry_run, errors}."
    )

    def add_arguments(self, parser):
        parser.add_argument("path")
        parser.add_argument("--apply", action="store_true", help="Write when no row is refused.")

    def handle(self, *args, **options):
        with open(options["path"], "rb") as upload:
            result = accounts_import(
                upload=upload, filename=options["path"], dry_run=not options["apply"]
            )
        self.stdout.write(
            json.dumps(
                {
                    "rows": result.rows,
                    "created": result.created,
                    "dry_run": result.dry_run,
                    "errors": result.errors,
                }
            )
        )
        if not result.ok:
            sys.exit(1)
