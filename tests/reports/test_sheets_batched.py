"""The batched import path (``core.sheets.import_rows`` with a resource's ``batch_size``):
new clients and accounts checked a batch at a time and created by the services' bulk
creation. It refuses the same rows with the same row numbers, columns and codes as the
per-row path (``batch_size=0``), wherever the bad rows fall, writes the same records when
the file is good, all or nothing, in a few queries per batch, with the audit trail."""

from __future__ import annotations

import io
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from accounts.models import Account, AccountEvent, Client, ClientEvent
from core.audit.context import acting
from core.caller import Caller
from core.validators import inn_complete
from reports.spreadsheets import sheet_import
from tests.audit.conftest import metadata, written

pytestmark = pytest.mark.django_db

CLIENTS = "kind,name,tax_id,kpp,external_ref,email"
ACCOUNTS = (
    "client_tax_id,client_external_ref,currency,brands,parent,name,credit_limit,"
    "credit_period_days,write_off_limit_day"
)
# A valid 12-digit INN: an individual's, refused for an organisation by the database's
# check constraint (at insert, so the batch goes row by row to name the row).
PERSON_INN = inn_complete("7700000001")


def csv_file(header: str, lines: list[str]) -> io.BytesIO:
    return io.BytesIO((header + "\n" + "".join(line + "\n" for line in lines)).encode())


def run(kind: str, header: str, lines: list[str], batch_size: int | None, dry_run=False):
    return sheet_import(
        kind=kind,
        upload=csv_file(header, lines),
        filename=f"{kind}.csv",
        dry_run=dry_run,
        batch_size=batch_size,
    )


def errors(outcome) -> list[tuple[int, str, str, str]]:
    return [(e["row"], e["column"], e["code"], e["message"]) for e in outcome.errors]


def good_clients(count: int, start: int = 0) -> list[str]:
    return [f"individual,Client {n},,,ref-{n},c{n}@example.com" for n in range(start, count)]


def good_accounts(count: int) -> list[str]:
    return [f"7707083893,,RUB,SPA,,Branch {n},{n}.50,30,300.00" for n in range(count)]


def written_records(kind: str, header: str, lines: list[str], batch_size: int | None):
    """Import for good, read what was written, roll it back: the records (without ids,
    numbers, timestamps) in file order."""
    model = {"clients": Client, "accounts": Account}[kind]
    last = model.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    records = None
    with pytest.raises(RuntimeError), transaction.atomic():
        outcome = run(kind, header, lines, batch_size)
        assert outcome.ok and outcome.written, outcome.errors
        new = model.objects.filter(pk__gt=last).order_by("pk")
        if kind == "clients":
            records = list(new.values(
                "kind", "name", "tax_id", "kpp", "external_ref", "email", "status",
            ))  # fmt: skip
        else:
            records = [
                (a.client_id, a.currency, a.parent_id, a.name, a.kind, a.status,
                 a.credit_limit, a.credit_period_days, a.write_off_limit_day,
                 sorted(b.code for b in a.brands.all()), len(a.number))
                for a in new.prefetch_related("brands")
            ]  # fmt: skip
        raise RuntimeError  # roll back
    return outcome.new, records


# --------------------------------------------------------------------------- refusals


def test_bad_clients_in_a_later_batch_refuse_the_whole_file_with_their_row_numbers(world):
    lines = good_clients(10)
    lines[6] = "individual,Bad Inn,123456789012,,ref-6,"  # line 8, third batch
    lines[8] = f"legal_entity,Person INN,{PERSON_INN},,ref-8,"  # line 10: the DB refuses
    lines.append("martian,Bad Kind,,,ref-10,")  # line 12
    before = Client.objects.count()
    outcome = run("clients", CLIENTS, lines, batch_size=3)
    assert [(row, column, code) for row, column, code, _ in errors(outcome)] == [
        (8, "tax_id", "invalid_tax_id"),
        (10, "", "invalid"),  # the kind / tax id check constraint
        (12, "kind", "invalid_choice"),
    ]
    assert not outcome.written and outcome.created == 0
    assert Client.objects.count() == before
    assert errors(outcome) == errors(run("clients", CLIENTS, lines, batch_size=0))
    assert errors(run("clients", CLIENTS, lines, batch_size=3, dry_run=True)) == errors(outcome)


def test_duplicates_inside_the_file_are_found_across_batches(world):
    lines = good_clients(8)
    lines.append("individual,Again,,,ref-1,")  # line 10 repeats line 3, two batches back
    lines.append("individual,Inn twice,7707083893,770701001,,")  # line 11
    lines.append("legal_entity,Inn twice,7707083893,770701001,ref-x,")  # line 12
    lines.append("individual,Again and again,,,ref-1,")  # line 13
    before = Client.objects.count()
    outcome = run("clients", CLIENTS, lines, batch_size=4)
    assert [(row, column, code) for row, column, code, _ in errors(outcome)] == [
        (10, "external_ref", "duplicate_in_file"),
        (11, "", "invalid"),  # an individual's INN has 12 digits (the check constraint)
        (12, "kpp", "duplicate_in_file"),
        (13, "external_ref", "duplicate_in_file"),
    ]
    assert "Repeats row 3" in errors(outcome)[0][3]
    assert Client.objects.count() == before
    assert errors(outcome) == errors(run("clients", CLIENTS, lines, batch_size=0))


def test_bad_accounts_in_a_later_batch_refuse_the_whole_file_with_their_row_numbers(world):
    usd = world["usd_payer"].number
    lines = good_accounts(12)
    lines[5] = "7707083893,,RUB,NOPE,,Unknown brand,,,"  # line 7
    lines[7] = f"7707083893,,RUB,SPA,{usd},Wrong currency payer,,,"  # line 9
    lines[8] = f"7707083893,,RUB,SPA,{usd},Wrong currency payer again,,,"  # line 10
    lines[9] = "0000000000,,RUB,SPA,,No such client,,,"  # line 11
    lines[10] = f",acme,,SPA,{world['payer'].number},Sub with credit,100.00,,"  # line 12
    lines[11] = "7707083893,,RUB,SPA,9999999999,No such payer,,,"  # line 13
    before = Account.objects.count()
    outcome = run("accounts", ACCOUNTS, lines, batch_size=4)
    assert [(row, column, code) for row, column, code, _ in errors(outcome)] == [
        (7, "brands", "not_found"),
        (9, "parent", "invalid_account_structure"),
        (10, "parent", "invalid_account_structure"),
        (11, "client_tax_id", "not_found"),
        (12, "credit_limit", "invalid_account_structure"),
        (13, "parent", "not_found"),
    ]
    assert not outcome.written and Account.objects.count() == before
    assert errors(outcome) == errors(run("accounts", ACCOUNTS, lines, batch_size=0))


# --------------------------------------------------------------------------- the same records


def test_good_clients_are_written_as_the_per_row_path_writes_them(world):
    lines = good_clients(7)
    lines.append(f"individual,With INN,{PERSON_INN},,ref-inn,")
    lines.append("legal_entity,Org,7707083893,770701001,ref-org,org@example.com")
    batched = written_records("clients", CLIENTS, lines, batch_size=4)
    assert batched == written_records("clients", CLIENTS, lines, batch_size=0)
    assert batched[0] == len(lines) == len(batched[1])


def test_good_accounts_are_written_as_the_per_row_path_writes_them(world):
    payer = world["payer"].number
    lines = good_accounts(6)
    lines.append(f",acme,,SPA,{payer},Employee,,,500.00")
    lines.append(f"7707083893,,,SPA,{payer},Employee 2,,,")
    lines.append("7707083893,,USD,,,Dollars,,,")
    batched = written_records("accounts", ACCOUNTS, lines, batch_size=4)
    assert batched == written_records("accounts", ACCOUNTS, lines, batch_size=0)
    assert batched[0] == len(lines)
    employee = batched[1][6]
    assert employee[2] == world["payer"].pk and employee[1] == "RUB"
    assert employee[8] == Decimal("500.00") and employee[9] == ["SPA"]


def test_a_batch_holding_a_change_goes_row_by_row_in_the_files_order(world):
    """A change may bear on the rows after it: its batch goes through the per-row path."""
    company = world["company"]
    lines = [
        *[line.replace("individual,", ",individual,", 1) for line in good_clients(2)],
        f"{company.pk},legal_entity,Acme renamed,7707083893,,acme,",
        *[line.replace("individual,", ",individual,", 1) for line in good_clients(6, 2)],
    ]
    with CaptureQueriesContext(connection) as queries:
        outcome = run("clients", "id," + CLIENTS, lines, batch_size=3, dry_run=True)
    assert (outcome.ok, outcome.updated, outcome.new) == (True, 1, 6), outcome.errors
    inserts = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("INSERT")]
    # the first batch (with the change) row by row: 2 inserts; then 2 batches: 1 each
    assert len(inserts) == 4


def test_a_file_mixing_changes_and_new_rows_updates_and_creates(world):
    company = world["company"]
    lines = [
        f"{company.pk},legal_entity,Acme renamed,7707083893,,acme,",
        *[line.replace("individual,", ",individual,", 1) for line in good_clients(3)],
    ]
    outcome = run("clients", "id," + CLIENTS, lines, batch_size=2)
    assert (outcome.ok, outcome.updated, outcome.new) == (True, 1, 3), outcome.errors
    company.refresh_from_db()
    assert company.name == "Acme renamed"
    assert Client.objects.filter(external_ref__startswith="ref-").count() == 3


# --------------------------------------------------------------------------- queries, audit


def test_the_batched_path_asks_the_database_a_few_times_per_batch_not_per_row(world):
    with CaptureQueriesContext(connection) as clients:
        outcome = run("clients", CLIENTS, good_clients(60), batch_size=30, dry_run=True)
    assert outcome.ok and outcome.new == 60
    with CaptureQueriesContext(connection) as accounts:
        outcome = run("accounts", ACCOUNTS, good_accounts(60), batch_size=30, dry_run=True)
    assert outcome.ok and outcome.new == 60
    # per batch: the look-ups, the savepoint, the numbers, the inserts; never one per row
    assert len(clients) <= 16, [q["sql"][:60] for q in clients.captured_queries]
    assert len(accounts) <= 30, [q["sql"][:60] for q in accounts.captured_queries]
    with CaptureQueriesContext(connection) as per_row:
        run("clients", CLIENTS, good_clients(60), batch_size=0, dry_run=True)
    assert len(per_row) >= 60 * 2


def test_batched_imports_keep_the_audit_trail(world):
    with written() as w, acting(Caller.system("sheet_import")):
        run("clients", CLIENTS, good_clients(5), batch_size=2)
        run("accounts", ACCOUNTS, good_accounts(5), batch_size=2)
    clients, accounts = w.of(ClientEvent), w.of(AccountEvent)
    assert sorted(e.external_ref for e in clients) == [f"ref-{n}" for n in range(5)]
    assert {e.pgh_label for e in clients + accounts} == {"create"}
    assert sorted(e.name for e in accounts) == [f"Branch {n}" for n in range(5)]
    assert {metadata(e)["actor"] for e in clients + accounts} == {"system:sheet_import"}
