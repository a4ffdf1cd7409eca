"""A payer's entries in time order as a covering index: ``(account, created_at, id)``
including ``amount, balance_after, transaction_id``, partial on client entries
(``balance_after`` set), in place of ``(account, created_at)``.

A statement's movements are then one index-only range scan in the order shown, and its
opening balance (the last ``balance_after`` before the period) one backward lookup
without a sort on ``id``. It replaces the narrower index, so posting maintains no more
indexes than before. Built concurrently (no write lock on the ledger), the new one
before the old one goes.
"""

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("ledger", "0007_transaction_xact_id"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="entry",
            index=models.Index(
                condition=models.Q(("balance_after__isnull", False)),
                fields=["account", "created_at", "id"],
                include=["amount", "balance_after", "transaction"],
                name="ledger_entry_acct_time_cov_idx",
            ),
        ),
        RemoveIndexConcurrently(model_name="entry", name="ledger_entry_account_time_idx"),
    ]
