"""Bulk ingest of usage records and meter readings through PostgreSQL COPY.

A batch (a CSV file, or the records of one API request) is one database
transaction: either every valid record of it is stored, or nothing is.

1. ``COPY`` streams the batch into a temporary staging table, numbered in input
   order. Fast path: the table is typed, so PostgreSQL's own parsers read ids and
   numbers as the rows stream in, and moments are cast in bulk. If any value cannot
   be read, that attempt is rolled back (a savepoint) and the batch is staged again
   as text and read value by value with exception-free readers (migration 0003), so
   the bad value becomes a per-record error. Both paths accept exactly the same values.
2. One statement validates every row (account and service exist, the account is a
   client account linked to the service's brand and in the caller's brand scope,
   quantity / reading is a non-negative number with at most six decimals, the moment
   is an ISO-8601-shaped date and time PostgreSQL reads, not in the future, an
   external id is present; usage also needs a subscription of the account to the
   service on the business day it occurred, ``no_subscription`` otherwise: the
   rating bills usage per subscription only, so it would be stored and never billed.
   Usage that arrives before its subscription is sent again once it exists, and
   its external id makes the resend safe) and, for usage, inserts the valid rows with one ``INSERT
   ... SELECT`` (optimistically without ``ON CONFLICT``; again with ``ON CONFLICT
   (service, external_id) DO NOTHING`` only if a duplicate shows up: the rows it
   skips are the duplicates, within the batch or already stored). Invalid rows come
   back as ``{index, code, message}``.
3. Meter readings need their neighbours: the valid rows are checked in Python
   per meter, in time order, against the previous and next stored readings
   (``reading_backwards`` unless it is a plausible rollover), each reading's
   ``consumption`` is computed, and a late reading landing between two others
   updates the next one's consumption. The meters are locked (in id order)
   for that, so two batches for one meter queue rather than race, and known
   external ids are looked up again under those locks (a parallel batch's
   readings are duplicates, not readings going backwards). One external id sent
   for two meters by parallel batches meets the unique constraint instead: the
   batch is placed again from a savepoint and the stored one counts as a
   duplicate. An account/service with no meter yet gets one, installed at its
   first reading.

A usage file is first tried the direct way (``invoicing.ingest.direct``): COPY straight
into ``invoicing_usagerecord`` in a savepoint, the rules checked per block, per
(account, service) pair and per hour; a file with any row that is not plainly valid and
new is rolled back to the savepoint and goes through the steps above, so the outcome is
always theirs.

Timestamps without an offset are read in the business time zone.
"""

from invoicing.ingest.readings import meter_readings_ingest_file, meter_readings_ingest_records
from invoicing.ingest.staging import (
    LOAD_TABLE,
    MAX_API_RECORDS,
    IngestResult,
    RecordError,
)
from invoicing.ingest.usage import usage_ingest_file, usage_ingest_records

__all__ = [
    "LOAD_TABLE",
    "MAX_API_RECORDS",
    "IngestResult",
    "RecordError",
    "meter_readings_ingest_file",
    "meter_readings_ingest_records",
    "usage_ingest_file",
    "usage_ingest_records",
]
