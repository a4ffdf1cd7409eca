"""Invoice numbers: unique, ascending, gap-free per brand and year under concurrent chunks."""

import random
import threading
import time

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.test import override_settings

from invoicing import services
from invoicing.models import Invoice, InvoiceRun
from tests.factories import BrandFactory
from tests.invoicing.population import build_population


class Rollback(Exception):
    pass


@pytest.mark.django_db(transaction=True)
def test_number_blocks_from_concurrent_transactions_are_gap_free():
    brand = BrandFactory()
    committed: list[list[int]] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(15):
                try:
                    with transaction.atomic():
                        block = services.invoice_numbers_allocate(
                            brand_id=brand.pk, year=2026, count=rng.randint(1, 6)
                        )
                        time.sleep(rng.random() / 500)  # hold the row lock a little
                        if rng.random() < 0.3:
                            raise Rollback  # a chunk that fails after taking its numbers
                    with lock:
                        committed.append(block)
                except Rollback:
                    pass
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    numbers = sorted(n for block in committed for n in block)
    assert numbers == list(range(1, len(numbers) + 1))  # unique and gap-free
    assert all(block == list(range(block[0], block[-1] + 1)) for block in committed)
    assert services.invoice_numbers_allocate(brand_id=brand.pk, year=2026, count=1) == [
        len(numbers) + 1
    ]
    assert services.invoice_numbers_allocate(brand_id=brand.pk, year=2027, count=2) == [1, 2]


@pytest.mark.django_db(transaction=True)
def test_concurrent_chunks_issue_gap_free_numbers():
    population = build_population(80)
    with override_settings(Q_CLUSTER={**settings.Q_CLUSTER, "sync": True}):
        draft = services.invoice_run_start(period="2026-01", mode="draft", chunk_size=10)
    draft.refresh_from_db()
    assert draft.status == InvoiceRun.Status.DRAFT_READY
    services.invoice_run_approve(run=draft)  # chunks created; no cluster: process them here
    chunk_ids = list(draft.chunks.filter(phase="issue").values_list("pk", flat=True))
    errors: list[BaseException] = []

    def worker(ids: list[int]) -> None:
        try:
            for chunk_id in ids:
                services.invoice_run_chunk_process(chunk_id=chunk_id)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(chunk_ids[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    draft.refresh_from_db()
    assert draft.status == InvoiceRun.Status.COMPLETED
    for brand in (population.brand, population.other_brand):
        numbers = [
            int(number.rsplit("-", 1)[1])
            for number in Invoice.objects.filter(brand=brand).values_list("number", flat=True)
        ]
        assert sorted(numbers) == list(range(1, len(numbers) + 1))
    assert Invoice.objects.filter(status="issued").count() == len(population.expected)


@pytest.mark.django_db
def test_issue_checks_lines_and_ledger_rows_before_taking_the_numbers():
    """The deferred foreign keys of the lines and the ledger's rows are checked when issuing
    takes its numbers (not in the commit, while the number counter is held), and deferred
    again afterwards; the invoices' own keys are left to the commit (checked once there)."""
    from django.db import IntegrityError
    from django.utils import timezone

    from core.keys import deferred_keys
    from invoicing.services import issuing

    issuing._check_written_rows()  # nothing wrong written: nothing raised
    names = deferred_keys(issuing._WRITTEN_BEFORE_NUMBERS)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT conrelid::regclass::text FROM pg_constraint"
            " WHERE contype = 'f' AND quote_ident(conname) = ANY(%s)",
            [names.split(", ")],
        )
        tables = {row[0] for row in cursor.fetchall()}
    assert tables == set(issuing._WRITTEN_BEFORE_NUMBERS)  # none missing, no invoice keys

    def write_dangling_key() -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO ledger_idempotencykey"
                " (caller, key, operation, request_hash, created_at, transaction_id)"
                " VALUES ('test', 'dangling', 'accrual', '', %s, -1)",
                [timezone.now()],
            )

    written = []
    with pytest.raises(IntegrityError), transaction.atomic():
        write_dangling_key()  # deferred again after the check above: accepted for now
        written.append(True)
        issuing._check_written_rows()  # ... and refused here, before any number
    assert written == [True]
