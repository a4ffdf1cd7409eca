"""Hostile input sent to every endpoint of the served OpenAPI schema: never a 5xx.

Every write operation (POST, PUT, PATCH) is read from the schema the API
serves, so a new endpoint is swept without anyone listing it. For each field of
its request body (nested ones too) the sweep starts from a body that is valid
everywhere else and puts one bad value in that field: NUL characters, an
unpaired surrogate (the JSON escape ``"\\ud800"`` in the raw body), a 100 KB
string, numbers beyond any column (``1e400``, 26 digits), negative and zero
amounts, and the wrong JSON type. Each answer must be a ``400
validation_error`` naming the field, and nothing may have been written. Free-form
records (usage, meter readings) are reported per record instead: a 200 with the
record refused. Both a partner key and a superuser session are tried.

Every list's query parameters get the same treatment (a NUL or an over-long
value is a 400; nothing is a 5xx), and so do the ids in paths.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import pytest
from django.db import connection, transaction
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator

from accounts.models import Client
from core.validators import inn_complete
from invoicing.models import InvoiceRun, Subscription, Tariff
from invoicing.services import subscription_create, tariff_create
from ledger.services import debit_post, hold_create, hold_void
from tests.api.conftest import api_client, make_side
from tests.factories import AccountFactory, UserFactory

SCHEMA = SchemaGenerator().get_schema(request=None, public=True)
WRITE_METHODS = ("post", "put", "patch")
HUGE_TEXT = "x" * 100_000


# --------------------------------------------------------------------------- raw JSON


@dataclass(frozen=True)
class Raw:
    """A JSON token written into the body as is (``1e400`` is no Python float)."""

    text: str


def raw_json(value: Any) -> str:
    """``value`` as JSON text; ``Raw`` tokens verbatim, lone surrogates as ``\\udXXX``."""
    raws: dict[str, str] = {}

    def mark(item: Any) -> Any:
        if isinstance(item, Raw):
            placeholder = f"@@raw{len(raws)}@@"
            raws[placeholder] = item.text
            return placeholder
        if isinstance(item, dict):
            return {mark(k): mark(v) for k, v in item.items()}
        if isinstance(item, list):
            return [mark(v) for v in item]
        return item

    text = json.dumps(mark(value))  # ensure_ascii: NUL -> \u0000, a surrogate -> \ud800
    for placeholder, token in raws.items():
        text = text.replace(json.dumps(placeholder), token)
    return text


# --------------------------------------------------------------------------- the schema


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = SCHEMA["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    for combined in ("allOf", "oneOf", "anyOf"):
        if combined in schema:
            options = [resolve(s) for s in schema[combined]]
            typed = [s for s in options if s.get("maxLength") != 0 and "enum" not in s] or options
            merged = {**typed[0], **{k: v for k, v in schema.items() if k != combined}}
            if any(None in s.get("enum", ()) for s in options):
                merged["nullable"] = True
            return merged
    return schema


def request_schema(operation: dict[str, Any]) -> dict[str, Any] | None:
    content = operation.get("requestBody", {}).get("content", {})
    body = content.get("application/json", {}).get("schema")
    return resolve(body) if body else None


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    body: dict[str, Any] | None
    query: tuple[dict[str, Any], ...] = ()

    def __str__(self) -> str:
        return f"{self.method.upper()} {self.path}"

    @property
    def resource(self) -> str:
        return self.path.removeprefix("/api/v1/").split("/", 1)[0]


def operations() -> list[Operation]:
    found = []
    for path, methods in SCHEMA["paths"].items():
        for method, operation in methods.items():
            if method in WRITE_METHODS:
                found.append(Operation(method, path, request_schema(operation)))
            elif method == "get":
                query = tuple(p for p in operation.get("parameters", []) if p["in"] == "query")
                found.append(Operation(method, path, None, query))
    return sorted(found, key=str)


OPERATIONS = operations()
WRITES = [op for op in OPERATIONS if op.method in WRITE_METHODS]
LISTS = [op for op in OPERATIONS if op.method == "get" and op.query]
DETAILS = [op for op in OPERATIONS if "{id}" in op.path]


# --------------------------------------------------------------------------- the world


@dataclass
class World:
    """Objects in the caller's scope, named the way request fields name them."""

    ids: dict[str, Any]
    path_ids: dict[str, int]
    api: Any = None
    label: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def build_world(principal: str) -> World:
    side = make_side("Sweeper", funds="1000.00")
    other = AccountFactory(brands=[side.brand])
    client = side.account.client
    today = timezone.localdate()
    tariff = tariff_create(
        service=side.service, kind="flat", valid_from=today.replace(day=1), price="10.00"
    )
    subscription = subscription_create(
        account=side.account,
        tariff=tariff,
        starts_on=today.replace(day=1),
        ends_on=today + timedelta(days=10),
    )
    voided = hold_create(account=side.account, amount="1.00", brand=side.brand)
    hold_void(hold=voided)
    posted = debit_post(account=side.account, amount="1.00", brand=side.brand)
    run = InvoiceRun.objects.filter(brand=side.brand).first()
    ids = {
        "account": side.account.pk,
        "from_account": side.account.pk,
        "to_account": other.pk,
        "client": client.pk,
        "brand": side.brand.pk,
        "service": side.service.pk,
        "tariff": tariff.pk,
        "brands": [side.brand.code],
    }
    path_ids = {
        "accounts": side.account.pk,
        "clients": client.pk,
        "services": side.service.pk,
        "subscriptions": subscription.pk,
        "tariffs": tariff.pk,
        "holds": voided.pk,  # voided: a capture or void with good input changes nothing
        "transactions": posted.pk,
        "invoice-runs": run.pk if run else 999_999_999,
        "invoices": 999_999_999,
        "brands": side.brand.pk,
    }
    if principal == "partner":
        api, label = side.api, "partner"
    else:
        user = UserFactory(is_staff=True, is_superuser=True)
        user.save()
        api = api_client()
        api.force_login(user)
        label = "superuser"
    api.raise_request_exception = False  # a 500 is an answer to report, not an exception
    return World(ids, path_ids, api, label)


@pytest.fixture(params=["partner", "superuser"])
def world(request, db):
    return build_world(request.param)


# --------------------------------------------------------------------------- good values

# Free-form records: what a good one looks like (the schema leaves them open).
GOOD_RECORDS = {
    "records": lambda w: {
        "account": w.ids["account"],
        "service": w.ids["service"],
        "quantity": "1.5",
        "occurred_at": (timezone.now() - timedelta(hours=1)).isoformat(),
        "external_id": "sweep-1",
    },
    "readings": lambda w: {
        "account": w.ids["account"],
        "service": w.ids["service"],
        "reading": "10",
        "taken_at": (timezone.now() - timedelta(hours=1)).isoformat(),
        "external_id": "sweep-1",
        "meter": "M-1",
    },
}
GOOD_TEXT = {
    "return_url": "https://shop.example/back",
    "period": "2000-01",
    "currency": "RUB",
    "vat_rate": "20.00",
    "code": "swept",
    "tax_id": inn_complete("7707083893"),
}


def good_value(name: str, schema: dict[str, Any], world: World) -> Any:
    schema = resolve(schema)
    if name in world.ids and schema.get("type") in ("integer", "array"):
        return world.ids[name]
    if "enum" in schema:
        return next(v for v in schema["enum"] if v not in (None, ""))
    kind = schema.get("type")
    fmt = schema.get("format")
    if schema.get("nullable") and kind == "integer":
        return None  # an optional reference (a payer, a brand): none
    if kind == "array":
        items = resolve(schema.get("items", {}))
        if name in GOOD_RECORDS:
            return [GOOD_RECORDS[name](world)]
        if items.get("type") == "object" and items.get("properties"):
            return [good_object(items, world)]
        return []
    if kind == "object":
        return good_object(schema, world) if schema.get("properties") else {}
    if kind == "integer":
        return max(1, schema.get("minimum", 1))
    if kind == "boolean":
        return True
    if fmt == "decimal":
        return "1.00"
    if fmt == "date":
        return (timezone.localdate() + timedelta(days=30)).isoformat()
    if fmt == "date-time":
        return (timezone.now() + timedelta(days=1)).isoformat()
    if fmt == "email":
        return "sweep@example.com"
    if name in GOOD_TEXT:
        return GOOD_TEXT[name]
    return "ok"


def good_object(schema: dict[str, Any], world: World) -> dict[str, Any]:
    schema = resolve(schema)
    body = {
        name: good_value(name, prop, world)
        for name, prop in schema.get("properties", {}).items()
        if not resolve(prop).get("readOnly")
    }
    if "tiers" in body:  # a tariff: tiered, so that the tiers are used (and swept)
        body.update(kind="tiered", price=None)
    if "up_to" in body:
        body["up_to"] = None  # the last (here the only) band is open-ended
    return body


# --------------------------------------------------------------------------- bad values


def bad_values(schema: dict[str, Any]) -> list[tuple[str, Any]]:
    """(label, value) pairs a field of this schema must refuse."""
    schema = resolve(schema)
    kind = schema.get("type")
    wrong_types = [("object", {}), ("array", []), ("bool", True)]
    huge = [("1e400", Raw("1e400")), ("26 digits", Raw("99999999999999999999999999"))]
    text = [
        ("NUL", "a\x00b"),
        ("lone surrogate", "a\ud800b"),
        ("100 KB", HUGE_TEXT),
    ]
    if kind == "array":
        item = resolve(schema.get("items", {}))
        values = [("object", {}), ("string", "a\x00b"), ("1e400", Raw("1e400"))]
        if item.get("type") in ("string", "integer"):
            values += [(f"item {label}", [value]) for label, value in bad_values(item)]
        return values
    if kind == "object":
        return [
            ("array", []),
            ("string", "a\x00b"),
            ("NUL value", {"k": "a\x00b"}),
            ("NUL key", {"a\x00b": "v"}),
            ("surrogate value", {"k": "a\ud800b"}),
            ("surrogate key", {"a\ud800b": "v"}),
            ("100 KB value", {"k": HUGE_TEXT}),
            ("1e400 value", {"k": Raw("1e400")}),
            ("deep", json.loads("[" * 50 + "]" * 50)),
        ]
    if kind == "integer" or kind == "number":
        values = [*wrong_types, *huge, ("-1", -1), ("NUL", "1\x00"), ("100 KB", "1" * 100_000)]
        values.append(("fraction", Raw("1.5")))
        if schema.get("minimum", 0) > 0:
            values.append(("0", 0))
        return values
    if kind == "boolean":
        return [("NUL", "\x00"), ("object", {}), ("1e400", Raw("1e400"))]
    values = [*text, *wrong_types, *huge]
    if schema.get("format") == "decimal":
        values += [
            ("negative", "-1.00"),
            ("NaN", "NaN"),
            ("Infinity", "Infinity"),
            ("exponent", "1e400"),
            ("26 digits string", "99999999999999999999999999"),
            ("float", Raw("10.5")),
        ]
        if "pattern" in schema and not re.match(schema["pattern"], "0"):
            values += [("zero", "0"), ("zero.00", "0.00")]
    return values


# A field of a free-form record: text or an integer; anything else, or text that cannot be
# stored or is longer than its column, refuses the record.
FREE_FORM_BAD = [
    ("NUL", "a\x00b"),
    ("lone surrogate", "a\ud800b"),
    ("100 KB", HUGE_TEXT),
    ("object", {}),
    ("array", []),
    ("bool", True),
    ("1e400", Raw("1e400")),
    ("fraction", Raw("1.5")),
]


# --------------------------------------------------------------------------- what must not move

STATE_SQL = """
SELECT (SELECT count(*) FROM ledger_transaction), (SELECT count(*) FROM ledger_entry),
       (SELECT count(*) FROM ledger_hold WHERE status = 'active'),
       (SELECT count(*) FROM accounts_client), (SELECT count(*) FROM accounts_account),
       (SELECT count(*) FROM brands_service), (SELECT count(*) FROM invoicing_tariff),
       (SELECT count(*) FROM invoicing_subscription), (SELECT count(*) FROM invoicing_usagerecord),
       (SELECT count(*) FROM invoicing_meterreading), (SELECT count(*) FROM invoicing_invoicerun),
       (SELECT md5(string_agg(c::text, ',' ORDER BY c.id)) FROM accounts_client c),
       (SELECT md5(string_agg(a::text, ',' ORDER BY a.id)) FROM accounts_account a),
       (SELECT md5(string_agg(s::text, ',' ORDER BY s.id)) FROM brands_service s),
       (SELECT md5(string_agg(s::text, ',' ORDER BY s.id)) FROM invoicing_subscription s)
"""


def state() -> tuple:
    with connection.cursor() as cursor:
        cursor.execute(STATE_SQL)
        return cursor.fetchone()


# --------------------------------------------------------------------------- sending


def url_of(op: Operation, world: World, ident: Any = None) -> str:
    return op.path.replace(
        "{id}", str(world.path_ids.get(op.resource, 1) if ident is None else ident)
    )


def send(op: Operation, world: World, body: Any, *, url: str | None = None):
    raw = body if isinstance(body, str) else raw_json(body)
    method = getattr(world.api, op.method)
    return method(url or url_of(op, world), raw, content_type="application/json")


def error_body(response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, dict) and set(body) == {"code", "message", "details"}:
        return body
    return None


def fields_of(schema: dict[str, Any] | None, world: World) -> list[tuple[list[Any], dict]]:
    """Every (path to a field, its schema) of a request body, nested objects and lists too."""
    if not schema:
        return []
    found = []
    for name, prop in schema.get("properties", {}).items():
        prop = resolve(prop)
        if prop.get("readOnly"):
            continue
        found.append(([name], prop))
        items = resolve(prop.get("items", {})) if prop.get("type") == "array" else {}
        if items.get("properties"):
            found += [([name, 0, *sub], s) for sub, s in fields_of(items, world)]
    return found


def with_value(body: dict[str, Any], path: list[Any], value: Any) -> dict[str, Any]:
    body = json.loads(json.dumps(body))
    target = body
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return body


def ingest_refused(response, label: str) -> str | None:
    """A batch endpoint answers 200 and refuses the bad record (index 0)."""
    if response.status_code == 400 and error_body(response):
        return None
    if response.status_code != 200:
        return f"{label}: {response.status_code} {response.content[:200]!r}"
    body = response.json()
    if body.get("accepted") != 0 or not body.get("errors"):
        return f"{label}: accepted {body}"
    return None


# --------------------------------------------------------------------------- the sweeps


@pytest.mark.parametrize("op", WRITES, ids=str)
def test_every_write_refuses_hostile_values_without_writing(op, world):
    before = state()
    failures: list[str] = []
    base = good_object(op.body, world) if op.body else {}
    with transaction.atomic():  # is the endpoint open to this caller at all?
        closed = send(op, world, base).status_code in (401, 403)
        transaction.set_rollback(True)

    def check(label: str, body: Any, field_name: str | None, *, free_form: bool = False) -> None:
        response = send(op, world, body)
        if response.status_code >= 500:
            failures.append(f"{label}: {response.status_code} {response.content[:300]!r}")
        elif closed:  # refused before reading the body (a staff-only action, for a key)
            if response.status_code not in (401, 403) or not error_body(response):
                failures.append(f"{label}: {response.status_code} {response.content[:300]!r}")
        elif free_form:
            problem = ingest_refused(response, label)
            if problem:
                failures.append(problem)
        elif op.body is not None:
            error = error_body(response)
            if response.status_code != 400 or not error or error["code"] != "validation_error":
                failures.append(f"{label}: {response.status_code} {response.content[:300]!r}")
            elif field_name is not None and field_name not in error["details"]:
                failures.append(f"{label}: details do not name {field_name}: {error['details']}")
        if state() != before:
            failures.append(f"{label}: something was written")

    # The whole body of the wrong kind.
    for label, body in [
        ("array body", "[]"),
        ("string body", '"\\u0000"'),
        ("number body", "1e400"),
        ("null body", "null"),
        ("surrogate body", '{"\\ud800": "\\ud800"}'),
    ]:
        if op.body is not None:
            check(label, body, None)
    for path, schema in fields_of(op.body, world):
        top = str(path[0])
        if path[0] in GOOD_RECORDS:
            continue  # free-form records are swept below
        for label, value in bad_values(schema):
            check(f"{'.'.join(map(str, path))} = {label}", with_value(base, path, value), top)
    for name, make in GOOD_RECORDS.items():
        if op.body is None or name not in op.body.get("properties", {}):
            continue
        record = make(world)
        for key in record:
            for label, value in FREE_FORM_BAD:
                bad = {**record, key: value}
                check(f"{name}[0].{key} = {label}", {name: [bad]}, name, free_form=True)
        for label, value in [
            ("NUL key", {"a\x00b": 1}),
            ("string", "a\x00b"),
            ("1e400", Raw("1e400")),
        ]:
            check(f"{name}[0] = {label}", {name: [value]}, name, free_form=True)
    assert not failures, f"{op} as {world.label}:\n" + "\n".join(failures)


@pytest.mark.parametrize("op", LISTS, ids=str)
def test_every_list_refuses_hostile_query_parameters(op, world):
    failures = []
    values = [
        ("NUL", "%00", True),
        ("100 KB", "x" * 100_000, True),
        ("encoded surrogate", "%ED%A0%80", False),
        ("invalid UTF-8", "%FF%FE", False),
        ("26 digits", "99999999999999999999999999", False),
        ("1e400", "1e400", False),
        ("-1", "-1", False),
    ]
    for param in op.query:
        for label, value, refused in values:
            url = f"{url_of(op, world)}?{param['name']}={value}"
            response = world.api.get(url)
            where = f"?{param['name']}= {label}"
            if response.status_code >= 500:
                failures.append(f"{where}: {response.status_code} {response.content[:300]!r}")
            elif response.status_code >= 400 and not error_body(response):
                failures.append(f"{where}: {response.status_code} without the error body")
            elif refused:
                error = error_body(response)
                if response.status_code != 400 or error["code"] != "validation_error":
                    failures.append(f"{where}: {response.status_code}, not refused")
    assert not failures, f"{op} as {world.label}:\n" + "\n".join(failures)


@pytest.mark.parametrize("op", DETAILS, ids=str)
def test_every_path_id_refuses_hostile_values(op, world):
    failures = []
    for label, ident in [
        ("NUL", "%00"),
        ("26 digits", "99999999999999999999999999"),
        ("-1", "-1"),
        ("text", quote("a\u00e9")),
        ("100 KB", "1" * 100_000),
    ]:
        url = url_of(op, world, ident)
        if op.method == "get":
            response = world.api.get(url)
        else:
            response = getattr(world.api, op.method)(url, "{}", content_type="application/json")
        if response.status_code >= 500:
            failures.append(f"{label}: {response.status_code} {response.content[:300]!r}")
        elif response.status_code not in (400, 403, 404, 405):  # 403: closed to this caller
            failures.append(f"{label}: {response.status_code}")
    assert not failures, f"{op} as {world.label}:\n" + "\n".join(failures)


def test_the_sweep_covers_every_write_endpoint():
    """The schema the sweep reads has the endpoints the docs promise (and nothing is skipped)."""
    swept = {str(op) for op in WRITES}
    for expected in [
        "POST /api/v1/payments/",
        "POST /api/v1/clients/",
        "PATCH /api/v1/accounts/{id}/",
        "POST /api/v1/usage/",
        "POST /api/v1/tariffs/",
    ]:
        assert expected in swept
    # Without a body: voids, approvals, applying a previewed registry; a registry upload
    # is multipart (a file), swept in tests/payments/test_api.py.
    assert all(
        op.body is not None
        for op in WRITES
        if not op.path.endswith(("/void/", "/approve/", "/apply/"))
        and op.path != "/api/v1/registries/"
    )


def test_good_bodies_are_accepted_so_the_sweep_tests_one_field_at_a_time(db):
    """The base bodies the sweep changes one field of are valid for the serializers."""
    world = build_world("partner")
    for op in WRITES:
        if op.body is None:
            continue
        body = good_object(op.body, world)
        with transaction.atomic():
            response = send(op, world, body)
            transaction.set_rollback(True)  # each body on its own against the same world
        assert response.status_code < 500, (str(op), response.content[:300])
        error = error_body(response)
        if error is not None:
            assert error["code"] != "validation_error" or op.resource in {
                "invoice-runs",
                "invoices",
            }, (str(op), error)
    assert Client.objects.exists() and Tariff.objects.exists() and Subscription.objects.exists()


def test_text_at_its_length_limit_never_overflows_a_column(db):
    """The limit each request field declares fits its column: a value of exactly
    ``maxLength`` characters is accepted or refused, never a database error."""
    world = build_world("partner")
    world.api.raise_request_exception = False
    tried = 0
    for op in WRITES:
        if op.body is None:
            continue
        base = good_object(op.body, world)
        for path, schema in fields_of(op.body, world):
            if schema.get("type") != "string" or "maxLength" not in schema:
                continue
            if "enum" in schema or "pattern" in schema or path[0] in GOOD_RECORDS:
                continue
            with transaction.atomic():
                response = send(op, world, with_value(base, path, "x" * schema["maxLength"]))
                transaction.set_rollback(True)
            tried += 1
            assert response.status_code < 500, (str(op), path, response.content[:300])
    assert tried > 20


def _strings(schema: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any]]]:
    schema = resolve(schema)
    if schema.get("readOnly"):
        return []
    if schema.get("type") == "string":
        return [(path, schema)]
    found = []
    for name, prop in schema.get("properties", {}).items():
        found += _strings(prop, f"{path}.{name}")
    if schema.get("type") == "array":
        found += _strings(schema.get("items", {}), f"{path}[]")
    return found


def test_every_text_field_of_a_request_has_a_length_limit():
    """A string in a request body is bounded: a maxLength (the column's), an enum, a pattern
    or a format (date, time, decimal) that bounds it."""
    unbounded, seen = [], 0
    for op in WRITES:
        for path, schema in _strings(op.body or {}, str(op)):
            seen += 1
            bounded = (
                "maxLength" in schema
                or "enum" in schema
                or "pattern" in schema
                or schema.get("format") in {"date", "date-time", "decimal"}
            )
            if not bounded:
                unbounded.append(path)
    assert seen > 30 and not unbounded, (seen, unbounded)


def test_request_id_and_idempotency_key_headers_with_hostile_values(db):
    """A bad ``X-Request-ID`` is replaced by a generated one (never echoed, never stored); a
    bad ``Idempotency-Key`` is 400 and nothing is posted."""
    world = build_world("partner")
    body = {"account": world.ids["account"], "amount": "1.00", "channel": "bank"}
    before = state()
    for bad in ["a\x00b", "x" * 100_000, "naïve", "tab\there"]:
        response = world.api.post(
            "/api/v1/payments/", body, format="json", HTTP_IDEMPOTENCY_KEY=bad
        )
        error = error_body(response)
        assert response.status_code == 400 and error["code"] == "validation_error"
        assert "Idempotency-Key" in error["details"]
        assert state() == before
    for bad in ["a\x00b", "x" * 100_000, "naïve", "a/b"]:
        response = world.api.get("/api/v1/accounts/", HTTP_X_REQUEST_ID=bad)
        assert response.status_code == 200
        assert re.fullmatch(r"[0-9a-f]{32}", response["X-Request-ID"])
