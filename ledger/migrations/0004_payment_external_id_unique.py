"""A payment's external id is unique per payer scope: the partner for a partner's postings,
the channel for staff and the system (``ledger.models.PAYER_SCOPE_SQL``).

The unique index is built CONCURRENTLY (postings go on while it is built; hence a
non-atomic migration). Ledger rows are append-only, so duplicates already stored cannot
be renamed here: the migration stops and lists them instead, before building anything.
"""

import django.db.models.expressions
from django.db import migrations, models

INDEX = "ledger_transaction_payment_external_id_unique"
SCOPE = "(CASE WHEN left(caller, 8) = 'partner:' THEN caller ELSE 'channel:' || channel END)"
PREDICATE = "kind = 'payment' AND external_id <> ''"


def refuse_existing_duplicates(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT {SCOPE} AS scope, external_id, array_agg(id ORDER BY id)
            FROM ledger_transaction WHERE {PREDICATE}
            GROUP BY 1, 2 HAVING count(*) > 1
            ORDER BY min(id) LIMIT 20
            """
        )
        duplicates = cursor.fetchall()
        # A build that failed half way (CONCURRENTLY) leaves an invalid index behind.
        cursor.execute(
            "SELECT NOT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " WHERE c.relname = %s",
            [INDEX],
        )
        invalid = cursor.fetchone()
        if invalid and invalid[0]:
            cursor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}")
    if duplicates:
        listed = "\n".join(
            f"  {scope} external_id={external_id!r}: transactions {ids}"
            for scope, external_id, ids in duplicates
        )
        raise RuntimeError(
            "Payments stored more than once with the same external_id (the first 20 shown)."
            " The unique index cannot be built until the database owner resolves each: reverse"
            " the extra postings, then give them another external_id (for example"
            " '<external_id>#dup-<id>') with ledger_transaction's append-only trigger disabled"
            " for that one statement:\n" + listed
        )


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("ledger", "0003_posting_permissions"),
    ]

    operations = [
        migrations.RunPython(refuse_existing_duplicates, migrations.RunPython.noop),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddConstraint(
                    model_name="transaction",
                    constraint=models.UniqueConstraint(
                        django.db.models.expressions.RawSQL(SCOPE, ()),
                        models.F("external_id"),
                        condition=models.Q(
                            ("kind", "payment"), models.Q(("external_id", ""), _negated=True)
                        ),
                        name=INDEX,
                        violation_error_message="This payment (external_id) was already posted.",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    f"CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS {INDEX}"
                    f" ON ledger_transaction ({SCOPE}, external_id) WHERE {PREDICATE}",
                    f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}",
                ),
            ],
        ),
    ]
