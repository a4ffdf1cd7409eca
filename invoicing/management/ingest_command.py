"""What ``ingest_usage`` and ``ingest_meter_readings`` share: arguments, timing, the report."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from core.errors import DomainError
from invoicing.ingest import IngestResult


class IngestFileCommand(BaseCommand):
    """Load one CSV file; print counts and the first refused rows (or JSON with ``--json``)."""

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--source", default="", help="Source label (default: the file name).")
        parser.add_argument("--show-errors", type=int, default=20, help="How many errors to list.")
        parser.add_argument(
            "--json", action="store_true", dest="as_json", help="Print the result as JSON."
        )

    def ingest(self, file: Path, source: str, options: dict[str, Any]) -> IngestResult:
        raise NotImplementedError

    def handle(self, *args: Any, **options: Any) -> None:
        file: Path = options["file"]
        if not file.exists():
            raise CommandError(f"No such file: {file}")
        started = time.perf_counter()
        try:
            result = self.ingest(file, options["source"] or f"file:{file.name}", options)
        except DomainError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from None
        seconds = time.perf_counter() - started
        shown = result.errors[: options["show_errors"]]
        if options["as_json"]:
            summary = {
                "received": result.received,
                "accepted": result.accepted,
                "duplicates": result.duplicates,
                "errors": len(result.errors),
                "seconds": round(seconds, 3),
                "first_errors": [error.as_dict() for error in shown],
            }
            self.stdout.write(json.dumps(summary))
            return
        self.stdout.write(
            f"{result.received} rows: {result.accepted} accepted, {result.duplicates} duplicates, "
            f"{len(result.errors)} refused ({seconds:.2f}s)"
        )
        for error in shown:
            self.stdout.write(f"  row {error.index}: {error.code}: {error.message}")
