# The moved tables (and the many-to-many tables named after them) take the access app's names.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("access", "0001_initial"),
        ("partners", "0002_identity_moves_to_access"),
    ]

    operations = [
        migrations.AlterModelTable(name="partner", table=None),
        migrations.AlterModelTable(name="apikey", table=None),
        migrations.AlterModelTable(name="apiidempotencyrecord", table=None),
    ]
