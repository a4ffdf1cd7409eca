# The claims' agent and registry foreign keys lose their own indexes: the unique
# (agent_id, payment_id) and the (registry_id, row) indexes lead with them, and every
# claim of a registry import (hundreds of thousands) paid for two more index entries.
# Only the indexes are dropped (the constraints stay as they are: no revalidation).

import django.db.models.deletion
from django.db import migrations, models

INDEXES = {
    "payments_agentpayment_agent_id_9abe549f": "agent_id",
    "payments_agentpayment_registry_id_289fecf7": "registry_id",
}


class Migration(migrations.Migration):
    dependencies = [
        ("payments", "0005_registry_idempotency_key"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="agentpayment",
                    name="agent",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="payments",
                        to="payments.paymentagent",
                    ),
                ),
                migrations.AlterField(
                    model_name="agentpayment",
                    name="registry",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="payments",
                        to="payments.registry",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    f'DROP INDEX IF EXISTS "{name}"',
                    f'CREATE INDEX IF NOT EXISTS "{name}" ON "payments_agentpayment" ("{column}")',
                )
                for name, column in INDEXES.items()
            ],
        ),
    ]
