# Partner, ApiKey and ApiIdempotencyRecord now belong to the access app, PartnerClient to
# accounts (their migrations took over the tables); the webhooks stay here. Content types
# follow, so permissions granted on the moved models are kept.

import django.db.models.deletion
from django.db import migrations, models

MOVED = {"partner": "access", "apikey": "access", "apiidempotencyrecord": "access",
         "partnerclient": "accounts"}  # fmt: skip


def move_content_types(apps, schema_editor):
    content_type = apps.get_model("contenttypes", "ContentType")
    for model, app_label in MOVED.items():
        content_type.objects.filter(app_label="partners", model=model).update(app_label=app_label)


def restore_content_types(apps, schema_editor):
    content_type = apps.get_model("contenttypes", "ContentType")
    for model, app_label in MOVED.items():
        content_type.objects.filter(app_label=app_label, model=model).update(app_label="partners")


class Migration(migrations.Migration):
    dependencies = [
        ("partners", "0001_initial"),
        ("access", "0001_initial"),
        ("accounts", "0004_partnerclient"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="webhookendpoint",
                    name="partner",
                    field=models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="webhook_endpoints",
                        to="access.partner",
                    ),
                ),
                migrations.DeleteModel(name="PartnerClient"),
                migrations.DeleteModel(name="ApiKey"),
                migrations.DeleteModel(name="ApiIdempotencyRecord"),
                migrations.DeleteModel(name="Partner"),
            ],
            database_operations=[],
        ),
        migrations.RunPython(move_content_types, restore_content_types),
    ]
