from pathlib import Path
from typing import Any

from django.conf import settings

from invoicing.ingest import IngestResult
from invoicing.ingest_parallel import usage_ingest_path
from invoicing.management.ingest_command import IngestFileCommand


class Command(IngestFileCommand):
    help = (
        "Load usage records from a CSV file through PostgreSQL COPY (header: account, service, "
        "quantity, occurred_at, external_id[, source]). Valid rows are stored in one "
        "transaction; duplicates are counted; invalid rows are reported by data row number. "
        "A large file is loaded by --workers parallel sessions and published by one transaction."
    )

    def add_arguments(self, parser: Any) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--workers",
            type=int,
            default=settings.INVOICING_INGEST_WORKERS,
            help="Parallel database sessions for a large file (default: %(default)s).",
        )

    def ingest(self, file: Path, source: str, options: dict[str, Any]) -> IngestResult:
        return usage_ingest_path(path=file, workers=options["workers"], source=source)
