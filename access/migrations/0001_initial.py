# Partners, API keys and stored API responses move from the partners app to access.
# The tables stay where they are here (state only); 0002 renames them.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("brands", "0001_initial"),
        ("partners", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="Partner",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("name", models.CharField(max_length=200, unique=True)),
                        ("is_active", models.BooleanField(default=True)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        (
                            "brands",
                            models.ManyToManyField(
                                blank=True, related_name="partners", to="brands.brand"
                            ),
                        ),
                    ],
                    options={"ordering": ["name"], "db_table": "partners_partner"},
                ),
                migrations.CreateModel(
                    name="ApiKey",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("name", models.CharField(blank=True, max_length=100)),
                        ("prefix", models.CharField(editable=False, max_length=16, unique=True)),
                        ("hashed_secret", models.CharField(editable=False, max_length=64)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        ("revoked_at", models.DateTimeField(blank=True, editable=False, null=True)),
                        (
                            "last_used_at",
                            models.DateTimeField(blank=True, editable=False, null=True),
                        ),
                        ("brands", models.ManyToManyField(related_name="api_keys", to="brands.brand")),
                        (
                            "partner",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="api_keys",
                                to="access.partner",
                            ),
                        ),
                    ],
                    options={
                        "verbose_name": "API key",
                        "ordering": ["-id"],
                        "db_table": "partners_apikey",
                    },
                ),
                migrations.CreateModel(
                    name="ApiIdempotencyRecord",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("caller", models.CharField(max_length=64)),
                        ("key", models.CharField(max_length=255)),
                        ("method", models.CharField(max_length=8)),
                        ("path", models.CharField(max_length=255)),
                        ("status_code", models.PositiveSmallIntegerField()),
                        (
                            "body",
                            models.BinaryField(help_text="The response body exactly as first sent."),
                        ),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                    ],
                    options={
                        "verbose_name": "API idempotency record",
                        "db_table": "partners_apiidempotencyrecord",
                        "constraints": [
                            models.UniqueConstraint(
                                fields=("caller", "key"),
                                name="access_apiidempotencyrecord_unique_per_caller",
                                violation_error_message="This idempotency key already has a response.",
                            )
                        ],
                    },
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    "ALTER TABLE partners_apiidempotencyrecord RENAME CONSTRAINT"
                    " partners_apiidempotencyrecord_unique_per_caller"
                    " TO access_apiidempotencyrecord_unique_per_caller",
                    "ALTER TABLE partners_apiidempotencyrecord RENAME CONSTRAINT"
                    " access_apiidempotencyrecord_unique_per_caller"
                    " TO partners_apiidempotencyrecord_unique_per_caller",
                ),
            ],
        ),
    ]
