"""Reports out as CSV and XLSX, streamed: memory stays bounded whatever the row count.

CSV is written a chunk of rows at a time into the response as it is sent. XLSX is a zip
of XML files: openpyxl's write-only workbook writes each row straight to a temporary
file (it keeps no cells in memory) and the finished file is sent in chunks, then
removed. Values keep their types: amounts are numbers with two decimals in XLSX and
plain decimal text in CSV (never floats on the way: ``Decimal`` goes through as is).
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import Iterable, Iterator
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.http import StreamingHttpResponse
from django.utils import timezone
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell

from core.sheets import safe_text
from reports.standard.base import Report

FORMATS = ("csv", "xlsx")
CHUNK_ROWS = 1000
FILE_CHUNK = 256 * 1024
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return timezone.localtime(value).isoformat()
    if isinstance(value, date | Decimal):
        return str(value)
    return str(value)


def csv_chunks(report: Report) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    keys = [c.key for c in report.columns]
    writer.writerow([c.label for c in report.columns])
    for count, row in enumerate(report.rows, start=1):
        writer.writerow([safe_text(_text(row.get(k))) for k in keys])
        if count % CHUNK_ROWS == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _xlsx_value(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if isinstance(value, datetime):
        return timezone.localtime(value).replace(tzinfo=None)
    if isinstance(value, Decimal):
        return value
    if isinstance(value, str):
        return safe_text(value)
    return value


def write_xlsx(report: Report, path: str) -> int:
    """Write the report to ``path`` row by row; the number of data rows."""
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(report.name[:31])
    sheet.append([c.label for c in report.columns])
    formats = {"money": "#,##0.00", "date": "yyyy-mm-dd", "datetime": "yyyy-mm-dd hh:mm:ss"}
    # Plain values for text and counts; a cell carrying its number format only where
    # one is needed (each formatted cell costs a style lookup).
    layout = [(c.key, c.kind, formats.get(c.kind)) for c in report.columns]
    count = 0
    for row in report.rows:
        cells = []
        for key, kind, number_format in layout:
            value = _xlsx_value(row.get(key), kind)
            if number_format is None or value is None:
                cells.append(value)
            else:
                cell = WriteOnlyCell(sheet, value=value)
                cell.number_format = number_format
                cells.append(cell)
        sheet.append(cells)
        count += 1
    workbook.save(path)
    return count


def xlsx_chunks(report: Report) -> Iterator[bytes]:
    handle, path = tempfile.mkstemp(suffix=".xlsx")
    os.close(handle)
    try:
        write_xlsx(report, path)
        with open(path, "rb") as stream:
            while chunk := stream.read(FILE_CHUNK):
                yield chunk
    finally:
        os.unlink(path)


def export_response(report: Report, fmt: str, filename: str) -> StreamingHttpResponse:
    if fmt == "csv":
        body: Iterable = csv_chunks(report)
        content_type = "text/csv; charset=utf-8"
    else:
        body = xlsx_chunks(report)
        content_type = XLSX_TYPE
    response = StreamingHttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}.{fmt}"'
    return response
