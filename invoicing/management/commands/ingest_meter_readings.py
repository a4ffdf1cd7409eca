from pathlib import Path
from typing import Any

from invoicing.ingest import IngestResult, meter_readings_ingest_file
from invoicing.management.ingest_command import IngestFileCommand


class Command(IngestFileCommand):
    help = (
        "Load cumulative meter readings from a CSV file through COPY (header: account, service, "
        "reading, taken_at, external_id[, meter, source]). Valid rows are stored in one "
        "transaction; duplicates are counted; invalid rows are reported by data row number."
    )

    def ingest(self, file: Path, source: str, options: dict[str, Any]) -> IngestResult:
        with file.open("rb") as stream:
            return meter_readings_ingest_file(stream=stream, source=source)
