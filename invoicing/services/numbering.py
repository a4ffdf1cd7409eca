"""Invoice numbers ``<prefix>-<year>-<000123>``: gap-free and ascending per (brand, year)
without serialising a run on one counter row. A block is taken with one upsert and its
row lock held to the end of the caller's transaction; issuing allocates last, right
before the chunk commits (see ``invoice_numbers_allocate``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from django.db import connection

from brands.models import Brand


def invoice_numbers_allocate(*, brand_id: int, year: int, count: int) -> list[int]:
    """Take ``count`` consecutive invoice numbers of a brand and year: one short upsert.

    Gap-free without serialising a run: the (brand, year) counter row is bumped
    by the whole block in one ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``
    and the block is ``last - count + 1 .. last``. The row lock this takes is
    held until the caller's transaction ends, which is what makes the numbers
    gap-free: a chunk that rolls back rolls its bump back too, and the next
    chunk gets the same numbers. So ``_issue`` allocates *last*, after the
    expensive work (rating, inserts, ledger postings), right before the chunk
    commits: concurrent chunks run in parallel and queue on this row only for
    their final UPDATE of the numbers and the commit. A run's chunks thus take
    ascending blocks in commit order; numbers ascend with issue order.
    Callers needing several brands take them in brand-id order (no deadlocks).
    """
    if count <= 0:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO invoicing_invoicenumbercounter (brand_id, year, last_number)
            VALUES (%s, %s, %s)
            ON CONFLICT (brand_id, year) DO UPDATE
                SET last_number = invoicing_invoicenumbercounter.last_number + EXCLUDED.last_number
            RETURNING last_number
            """,
            [brand_id, year, count],
        )
        last = cursor.fetchone()[0]
    return list(range(last - count + 1, last + 1))


def invoice_number_format(prefix: str, year: int, number: int) -> str:
    return f"{prefix}-{year}-{number:06d}"


def _numbers_for(ids: Sequence[int], brand_of: dict[int, int], year: int) -> dict[int, str]:
    """Allocate a block per brand (brands in id order) and hand it out in invoice-id order."""
    per_brand: dict[int, list[int]] = defaultdict(list)
    for invoice_id in sorted(ids):
        per_brand[brand_of[invoice_id]].append(invoice_id)
    prefixes = dict(Brand.objects.filter(pk__in=per_brand).values_list("pk", "invoice_prefix"))
    numbers: dict[int, str] = {}
    for brand_id in sorted(per_brand):
        block = invoice_numbers_allocate(
            brand_id=brand_id, year=year, count=len(per_brand[brand_id])
        )
        for invoice_id, number in zip(per_brand[brand_id], block, strict=True):
            numbers[invoice_id] = invoice_number_format(prefixes[brand_id], year, number)
    return numbers
