# PartnerClient (a client a partner created through the API) moves from partners to accounts;
# the table is renamed by 0005, once the partners app has let go of it.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0003_account_fillfactor"),
        ("access", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="PartnerClient",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        (
                            "client",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="partner_links",
                                to="accounts.client",
                            ),
                        ),
                        (
                            "partner",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="client_links",
                                to="access.partner",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "partners_partnerclient",
                        "constraints": [
                            models.UniqueConstraint(
                                fields=("partner", "client"),
                                name="accounts_partnerclient_unique_link",
                                violation_error_message=(
                                    "This client is already linked to the partner."
                                ),
                            )
                        ],
                    },
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    "ALTER TABLE partners_partnerclient RENAME CONSTRAINT"
                    " partners_partnerclient_unique_link TO accounts_partnerclient_unique_link",
                    "ALTER TABLE partners_partnerclient RENAME CONSTRAINT"
                    " accounts_partnerclient_unique_link TO partners_partnerclient_unique_link",
                ),
            ],
        ),
    ]
