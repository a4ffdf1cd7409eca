import json
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from billing_site.errors import DomainError
from invoicing.ingest_parallel import usage_ingest_path


class Command(BaseCommand):
    help = (
        "Load usage records from a CSV file through PostgreSQL COPY (header: account, service, "
        "quantity, occurred_at, external_id[, source]). Valid rows are stored in one "
        "transaction; duplicates are counted; invalid rows are reported by data row number. "
        "A large file is loaded by --workers parallel sessions that commit together."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument("--source", default="", help="Source label (default: the file name).")
        parser.add_argument("--show-errors", type=int, default=20, help="How many errors to list.")
        parser.add_argument(
            "--workers",
            type=int,
            default=settings.INVOICING_INGEST_WORKERS,
            help="Parallel database sessions for a large file (default: %(default)s).",
        )
        parser.add_argument(
            "--json", action="store_true", dest="as_json", help="Print the result as JSON."
        )

    def handle(
        self,
        *args,
        file: Path,
        source: str,
        show_errors: int,
        as_json: bool,
        workers: int,
        **options,
    ):
        if not file.exists():
            raise CommandError(f"No such file: {file}")
        started = time.perf_counter()
        try:
            result = usage_ingest_path(
                path=file, workers=workers, source=source or f"file:{file.name}"
            )
        except DomainError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from None
        seconds = time.perf_counter() - started
        summary = {
            "received": result.received,
            "accepted": result.accepted,
            "duplicates": result.duplicates,
            "errors": len(result.errors),
            "seconds": round(seconds, 3),
        }
        if as_json:
            self.stdout.write(json.dumps({**summary, "first_errors": _errors(result, show_errors)}))
            return
        self.stdout.write(
            f"{result.received} rows: {result.accepted} accepted, {result.duplicates} duplicates, "
            f"{len(result.errors)} refused ({seconds:.2f}s)"
        )
        for error in result.errors[:show_errors]:
            self.stdout.write(f"  row {error.index}: {error.code}: {error.message}")


def _errors(result, limit):
    return [error.as_dict() for error in result.errors[:limit]]
