import json
import sys

from django.core.management.base import BaseCommand

from reports.spreadsheets import SHEET_KINDS, sheet_import


class Command(BaseCommand):
    help = (
        "Import clients, accounts, services, tariffs, subscriptions or meter readings from a"
        " CSV or XLSX file: a dry run unless --apply; all rows or none. Prints JSON"
        " {rows, new, updated, skipped, dry_run, written, errors}."
    )

    def add_arguments(self, parser):
        parser.add_argument("kind", choices=sorted(SHEET_KINDS))
        parser.add_argument("path")
        parser.add_argument("--apply", action="store_true", help="Write when no row is refused.")

    def handle(self, *args, **options):
        with open(options["path"], "rb") as upload:
            result = sheet_import(
                kind=options["kind"],
                upload=upload,
                filename=options["path"],
                dry_run=not options["apply"],
            )
        self.stdout.write(json.dumps(result.as_dict(), default=str))
        if not result.ok:
            sys.exit(1)
