"""Reports out as CSV and XLSX, streamed: memory stays bounded whatever the row count.

CSV is written a chunk of rows at a time into the response as it is sent. XLSX is a zip
of XML files: XlsxWriter in constant-memory mode writes each row straight to a temporary
file (it keeps no cells in memory) and the finished file is sent in chunks, then
removed. Values keep their types: amounts are numbers shown with two decimals in XLSX
(a spreadsheet's numbers are doubles: exact to 15 significant figures) and plain
decimal text in CSV (``Decimal`` goes through as is).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import xlsxwriter
from django.http import StreamingHttpResponse
from django.utils import timezone

from core import sheets
from core.sheets import safe_text
from reports.standard.base import Report

FORMATS = ("csv", "xlsx")
FILE_CHUNK = 256 * 1024
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def csv_chunks(report: Report) -> Iterator[str]:
    keys = [c.key for c in report.columns]
    rows = ([row.get(k) for k in keys] for row in report.rows)
    return sheets.csv_chunks([c.label for c in report.columns], rows)


def write_xlsx(report: Report, path: str) -> int:
    """Write the report to ``path`` row by row; the number of data rows.

    XlsxWriter in ``constant_memory`` mode: each row goes to the sheet's temporary file
    as soon as the next one starts, strings are written inline (no shared-string table
    growing with the file), so memory stays flat; it writes ~3x faster than openpyxl's
    write-only workbook. Nothing is interpreted: text stays text (no formulas, URLs or
    numbers guessed from strings).
    """
    workbook = xlsxwriter.Workbook(
        path,
        {
            "constant_memory": True,
            "tmpdir": tempfile.gettempdir(),
            "strings_to_numbers": False,
            "strings_to_formulas": False,
            "strings_to_urls": False,
        },
    )
    try:
        sheet = workbook.add_worksheet(report.name[:31])
        formats = {
            kind: workbook.add_format({"num_format": number_format})
            for kind, number_format in XLSX_FORMATS.items()
        }
        sheet.write_row(0, 0, [c.label for c in report.columns])
        layout = [(col, c.key, formats.get(c.kind)) for col, c in enumerate(report.columns)]
        count = 0
        for count, row in enumerate(report.rows, start=1):
            for col, key, cell_format in layout:
                value = row.get(key)
                if value is not None:
                    _xlsx_write(sheet, count, col, value, cell_format)
    finally:
        workbook.close()
    return count


XLSX_FORMATS = {"money": "#,##0.00", "date": "yyyy-mm-dd", "datetime": "yyyy-mm-dd hh:mm:ss"}


def _xlsx_write(sheet: Any, row: int, col: int, value: Any, cell_format: Any) -> None:
    if isinstance(value, str):
        sheet.write_string(row, col, safe_text(value))
    elif isinstance(value, bool):
        sheet.write_boolean(row, col, value)
    elif isinstance(value, Decimal | int | float):
        # A spreadsheet number is a binary double whatever the file's text says: an
        # amount's digits survive up to 15 significant figures (10^13 with kopecks).
        sheet.write_number(row, col, value, cell_format)
    elif isinstance(value, datetime):
        sheet.write_datetime(row, col, timezone.localtime(value).replace(tzinfo=None), cell_format)
    elif isinstance(value, date):
        sheet.write_datetime(row, col, value, cell_format)
    else:
        sheet.write_string(row, col, safe_text(str(value)))


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
