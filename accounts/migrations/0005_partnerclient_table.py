from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0004_partnerclient"),
        ("partners", "0002_identity_moves_to_access"),
    ]

    operations = [migrations.AlterModelTable(name="partnerclient", table=None)]
