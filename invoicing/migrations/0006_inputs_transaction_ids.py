"""Commit-ordered markers for recalculation: the writing transaction of usage records and
meter readings (``xid8``, default ``pg_current_xact_id()``) and, on invoices, the oldest
transaction running when their inputs were last checked.

The columns are added without a default (no table rewrite on big tables) and the default
is set afterwards, so rows stored before stay NULL: recalculation compares those by insert
time, as before.
"""

import django.db.models.expressions
from django.db import migrations

import invoicing.models

XID_HELP = "The writing transaction (NULL for rows stored before it was recorded)."


def xact_field(**extra):
    return invoicing.models.TransactionIdField(
        null=True, editable=False, help_text=XID_HELP, **extra
    )


def with_default():
    return xact_field(
        db_default=django.db.models.expressions.Func(
            function="pg_current_xact_id", output_field=invoicing.models.TransactionIdField()
        )
    )


class Migration(migrations.Migration):
    dependencies = [("invoicing", "0005_audit_events")]

    operations = [
        migrations.AddField(model_name="usagerecord", name="xact_id", field=xact_field()),
        migrations.AlterField(model_name="usagerecord", name="xact_id", field=with_default()),
        migrations.AddField(model_name="meterreading", name="xact_id", field=xact_field()),
        migrations.AlterField(model_name="meterreading", name="xact_id", field=with_default()),
        migrations.AddField(
            model_name="invoice",
            name="inputs_xmin",
            field=invoicing.models.TransactionIdField(
                blank=True,
                editable=False,
                help_text=(
                    "The oldest transaction still running when the inputs were last checked:"
                    " usage and readings written by it or later ones are new to that check."
                ),
                null=True,
            ),
        ),
    ]
