"""Two database roles: the owner runs migrations, the application runs as a runtime role.

- ``MIGRATION_DATABASE_URL`` (the owner): owns every table; ``manage.py migrate`` and
  ``setup_db_roles`` (and nothing else) connect with it. Defaults to ``DATABASE_URL``.
- ``DATABASE_URL`` (the runtime role): the web processes, the q2 cluster and every other
  command. It may only do what ``RUNTIME_PRIVILEGES`` grants: on the ledger's rows INSERT and
  SELECT, never UPDATE, DELETE or TRUNCATE; it owns nothing, so it cannot ALTER a table
  (disable a trigger) either.

Without either variable (a developer machine), the owner is the default or embedded
server's ``postgres`` user and the runtime role is ``billing_app`` on the same database
(``DEFAULT_RUNTIME_USER``). With only ``DATABASE_URL`` set, both are the same role: a
single-URL setup works, without the separation.

``manage.py migrate`` ends with ``setup_db_roles``: it creates the runtime role when it is
missing (LOGIN, with the URL's password, no other attribute) and grants it exactly
``RUNTIME_PRIVILEGES`` table by table (revoking anything else), USAGE and SELECT on the
sequences, and the same on sequences the owner creates later (default privileges). It is
idempotent; ``tests/test_database_roles.py`` checks that every table has an entry here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit, urlunsplit

from billing_site import embedded_pg

DEFAULT_RUNTIME_USER = "billing_app"


# --------------------------------------------------------------------------- the two URLs


def with_user(url: str, user: str) -> str:
    """``url`` with its user replaced (and its password dropped)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{quote(user, safe='')}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def owner_url() -> str:
    """The URL migrations run with: ``MIGRATION_DATABASE_URL``, else ``DATABASE_URL``, else
    the default (or embedded) server's as its ``postgres`` user."""
    return os.environ.get("MIGRATION_DATABASE_URL") or embedded_pg.database_url()


def runtime_url() -> str:
    """The URL the application runs with: ``DATABASE_URL``; without it, the owner's URL
    with the user ``billing_app`` (``DATABASE_RUNTIME_USER``)."""
    configured = os.environ.get("DATABASE_URL")
    if configured:
        return configured
    return with_user(owner_url(), os.environ.get("DATABASE_RUNTIME_USER", DEFAULT_RUNTIME_USER))


# --------------------------------------------------------------------------- privileges


@dataclass(frozen=True)
class Grant:
    """What the runtime role may do to one table: whole-table privileges and, when
    ``update_columns`` is set, UPDATE of those columns only."""

    privileges: frozenset[str]
    update_columns: tuple[str, ...] = field(default=())

    def statements(self, table: str, role: str) -> list[str]:
        from psycopg import sql

        out = []
        if self.privileges:
            out.append(
                sql.SQL("GRANT {} ON TABLE {} TO {}").format(
                    sql.SQL(", ").join(sql.SQL(p) for p in sorted(self.privileges)),
                    sql.Identifier(table),
                    sql.Identifier(role),
                )
            )
        if self.update_columns:
            out.append(
                sql.SQL("GRANT UPDATE ({}) ON TABLE {} TO {}").format(
                    sql.SQL(", ").join(sql.Identifier(c) for c in self.update_columns),
                    sql.Identifier(table),
                    sql.Identifier(role),
                )
            )
        return out


FULL = Grant(frozenset({"SELECT", "INSERT", "UPDATE", "DELETE"}))
# Rows written once and never changed: ledger rows, audit events, recorded responses.
APPEND_ONLY = Grant(frozenset({"SELECT", "INSERT"}))
# Rows that change but are never removed (they are referenced, or kept as records).
NO_DELETE = Grant(frozenset({"SELECT", "INSERT", "UPDATE"}))
READ_ONLY = Grant(frozenset({"SELECT"}))
# Read models rebuilt from scratch by their projector (reports.projections).
PROJECTION = Grant(frozenset({"SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE"}))

RUNTIME_PRIVILEGES: dict[str, Grant] = {
    # The ledger: append-only (its triggers refuse UPDATE, DELETE and TRUNCATE as well).
    "ledger_transaction": APPEND_ONLY,
    "ledger_entry": APPEND_ONLY,
    "ledger_idempotencykey": APPEND_ONLY,
    # A hold is closed (captured, voided, expired) by updating exactly these columns.
    "ledger_hold": Grant(
        frozenset({"SELECT", "INSERT"}), update_columns=("status", "captured_amount", "closed_at")
    ),
    # Accounts carry the running balance, held amount and limit counters (updated by every
    # posting) and the details staff edit; clients likewise. Neither is ever deleted.
    "accounts_account": NO_DELETE,
    "accounts_account_brands": FULL,
    "accounts_client": NO_DELETE,
    "accounts_partnerclient": FULL,
    # Audit trail (pghistory): events are inserted by triggers, never changed; the
    # context row of a request is upserted.
    "accounts_accountevent": APPEND_ONLY,
    "accounts_clientevent": APPEND_ONLY,
    "access_apikeyevent": APPEND_ONLY,
    "brands_brandevent": APPEND_ONLY,
    "invoicing_tariffevent": APPEND_ONLY,
    "invoicing_tarifftierevent": APPEND_ONLY,
    "partners_apikeybrandevent": APPEND_ONLY,
    "pghistory_context": NO_DELETE,
    # Partner access.
    "access_apiidempotencyrecord": APPEND_ONLY,
    "access_apikey": FULL,
    "access_apikey_brands": FULL,
    "access_partner": FULL,
    "access_partner_brands": FULL,
    "approvals_approvalrequest": NO_DELETE,
    "brands_brand": FULL,
    "brands_service": FULL,
    # Invoicing: drafts are replaced (deleted with their lines), counters and runs move on.
    "invoicing_billingperiod": FULL,
    "invoicing_invoice": FULL,
    "invoicing_invoiceallocation": FULL,
    "invoicing_invoiceline": FULL,
    "invoicing_invoicenumbercounter": FULL,
    "invoicing_invoicerun": FULL,
    "invoicing_invoicerunchunk": FULL,
    "invoicing_invoicerunfailure": FULL,
    "invoicing_meter": FULL,
    "invoicing_meterreading": FULL,
    "invoicing_penaltyaccrual": FULL,
    "invoicing_penaltypolicy": FULL,
    "invoicing_subscription": FULL,
    "invoicing_tariff": FULL,
    "invoicing_tarifftier": FULL,
    "invoicing_usagerecord": FULL,
    # Parts of a parallel ingest staged until one transaction publishes them.
    "invoicing_usageload": Grant(frozenset({"SELECT", "INSERT", "DELETE"})),
    # Payment intake: agents, registries, suspense and rules change but are kept (they are
    # referenced); a claimed agent payment only learns its transaction; logs are append-only.
    "payments_paymentagent": NO_DELETE,
    "payments_registrylayout": FULL,
    "payments_registry": NO_DELETE,
    "payments_agentpayment": Grant(
        frozenset({"SELECT", "INSERT"}), update_columns=("transaction_id", "outcome")
    ),
    "payments_suspenseitem": NO_DELETE,
    "payments_paymentrule": NO_DELETE,
    "payments_paymentintent": NO_DELETE,
    "payments_gatewaycall": NO_DELETE,
    "payments_gatewaycallback": APPEND_ONLY,
    "payments_refundsaga": NO_DELETE,
    "payments_refundsagastep": APPEND_ONLY,
    # Settlements: a prepared one is rebuilt (its items deleted) until it is paid out.
    "payments_settlement": NO_DELETE,
    "payments_settlementitem": FULL,
    "payments_settlementterms": FULL,
    "notifications_emailmessage": FULL,
    "partners_webhookattempt": FULL,
    "partners_webhookdelivery": FULL,
    "partners_webhookendpoint": FULL,
    "partners_webhookevent": FULL,
    # Reports: projections are the projector's (rebuilt with TRUNCATE); saved ad-hoc
    # definitions and their shares are staff data.
    "reports_projectionstate": FULL,
    "reports_dailyturnover": PROJECTION,
    "reports_accountmonthturnover": PROJECTION,
    "reports_accountdayturnover": PROJECTION,
    "reports_savedreport": FULL,
    "reports_savedreport_shared_with_users": FULL,
    "reports_savedreport_shared_with_groups": FULL,
    # Django and the libraries.
    "auth_group": FULL,
    "auth_group_permissions": FULL,
    "auth_permission": FULL,
    "auth_user": FULL,
    "auth_user_groups": FULL,
    "auth_user_user_permissions": FULL,
    "django_admin_log": FULL,
    "django_content_type": FULL,
    "django_migrations": READ_ONLY,
    "django_session": FULL,
    "django_q_ormq": FULL,
    "django_q_schedule": FULL,
    "django_q_task": FULL,
    "axes_accessattempt": FULL,
    "axes_accessattemptexpiration": FULL,
    "axes_accessfailurelog": FULL,
    "axes_accesslog": FULL,
}


# Sequences the runtime role may also move (UPDATE: setval): django-import-export resets the
# id sequence of a table after an import (the admin's client import).
RESETTABLE_SEQUENCES = {"accounts_client"}


# --------------------------------------------------------------------------- the setup


class RoleSetupError(RuntimeError):
    pass


def setup_runtime_role(
    cursor, *, role: str, password: str | None, schema: str = "public"
) -> list[str]:
    """Create ``role`` if missing and grant it ``RUNTIME_PRIVILEGES`` on every table of
    ``schema``, as the owner (``cursor`` connected as it). Returns warnings (tables the map
    does not know get nothing)."""
    from psycopg import sql

    # One setup at a time per cluster (roles are cluster-wide; parallel test workers).
    cursor.execute("SELECT pg_advisory_xact_lock(hashtext('billing setup_db_roles'))")
    cursor.execute("SELECT current_user, current_database()")
    owner, database = cursor.fetchone()
    if role == owner:
        raise RoleSetupError(f"The runtime role is the owner ({owner}): nothing to separate.")
    cursor.execute("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = %s", [role])
    found = cursor.fetchone()
    ident = sql.Identifier(role)
    if found is None:
        create = sql.SQL(
            "CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
        ).format(ident)
        if password:
            create += sql.SQL(" PASSWORD {}").format(sql.Literal(password))
        cursor.execute(create)
    elif any(found):
        raise RoleSetupError(
            f"The runtime role {role} is a superuser or bypasses row security: it would "
            "bypass every guard. Use an ordinary role."
        )
    cursor.execute(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relowner = (SELECT oid FROM pg_roles WHERE rolname = %s)",
        [schema, role],
    )
    if cursor.fetchone()[0]:
        raise RoleSetupError(f"The runtime role {role} owns tables in {schema}: it must own none.")
    schema_ident = sql.Identifier(schema)
    cursor.execute(
        sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(
            sql.Identifier(database), ident
        )
    )
    cursor.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema_ident, ident))
    cursor.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relkind IN ('r', 'p') ORDER BY 1",
        [schema],
    )
    warnings = []
    for (table,) in cursor.fetchall():
        cursor.execute(
            sql.SQL("REVOKE ALL ON TABLE {}.{} FROM {}").format(
                schema_ident, sql.Identifier(table), ident
            )
        )
        grant = RUNTIME_PRIVILEGES.get(table)
        if grant is None:
            warnings.append(
                f"{table}: not in billing_site.database.RUNTIME_PRIVILEGES, "
                f"the runtime role gets nothing on it"
            )
            continue
        for statement in grant.statements(table, role):
            cursor.execute(statement)
    cursor.execute(
        sql.SQL("REVOKE ALL ON ALL SEQUENCES IN SCHEMA {} FROM {}").format(schema_ident, ident)
    )
    cursor.execute(
        sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {} TO {}").format(
            schema_ident, ident
        )
    )
    for table in sorted(RESETTABLE_SEQUENCES):
        cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [f"{schema}.{table}"])
        sequence = cursor.fetchone()[0]
        if sequence:
            cursor.execute(
                sql.SQL("GRANT UPDATE ON SEQUENCE {} TO {}").format(sql.SQL(sequence), ident)
            )
    cursor.execute(
        sql.SQL(
            "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {}"
            " GRANT USAGE, SELECT ON SEQUENCES TO {}"
        ).format(sql.Identifier(owner), schema_ident, ident)
    )
    return warnings
