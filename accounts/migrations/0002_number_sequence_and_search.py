from django.contrib.postgres.indexes import GinIndex, OpClass
from django.contrib.postgres.operations import TrigramExtension
from django.db import migrations
from django.db.models.functions import Upper


class Migration(migrations.Migration):
    dependencies = [("accounts", "0001_initial")]

    operations = [
        # Account numbers: a sequence plus a Luhn check digit (core.validators).
        migrations.RunSQL(
            "CREATE SEQUENCE IF NOT EXISTS accounts_account_number_seq START 100000 CACHE 20",
            "DROP SEQUENCE IF EXISTS accounts_account_number_seq",
        ),
        # Operators search clients by any part of the name.
        TrigramExtension(),
        migrations.AddIndex(
            model_name="client",
            index=GinIndex(
                OpClass(Upper("name"), name="gin_trgm_ops"), name="accounts_client_name_trgm"
            ),
        ),
    ]
