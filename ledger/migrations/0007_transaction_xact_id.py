"""The writing database transaction of every ledger transaction (``xid8``, default
``pg_current_xact_id()``), indexed: the report projections follow the ledger by it.

The column is added without a default (no table rewrite on a big ledger) and the default
is set afterwards, so transactions stored before stay NULL: a projection rebuild reads
those (a rebuild reads everything); only what is written later is followed by the marker.
The index is built concurrently (no write lock on the ledger while it builds).
"""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models

import core.dbfields

HELP = "The writing database transaction (NULL for rows stored before it was kept)."


def xact_field(**extra):
    return core.dbfields.TransactionIdField(null=True, editable=False, help_text=HELP, **extra)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("ledger", "0006_balanced_not_ignorable"),
    ]

    operations = [
        migrations.AddField(model_name="transaction", name="xact_id", field=xact_field()),
        migrations.AlterField(
            model_name="transaction",
            name="xact_id",
            field=xact_field(
                db_default=models.Func(
                    function="pg_current_xact_id",
                    output_field=core.dbfields.TransactionIdField(),
                )
            ),
        ),
        AddIndexConcurrently(
            model_name="transaction",
            index=models.Index(
                condition=models.Q(("xact_id__isnull", False)),
                fields=["xact_id"],
                name="ledger_txn_xact_idx",
            ),
        ),
    ]
