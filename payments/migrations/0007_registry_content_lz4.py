"""A registry's file is compressed with lz4 rather than pglz where the server has it.

The file is kept whole with its registry (``Registry.content``, 21 MB for 200,000 rows);
compressing it with pglz took 0.56-0.70 s of the import's transaction, lz4 0.10-0.22 s
for a 12% larger stored value (3.9 MB -> 4.3 MB). Values already stored keep their
compression. A server built without lz4 keeps pglz: the migration then does nothing.
"""

from django.db import migrations

ALTER = "ALTER TABLE payments_registry ALTER COLUMN content SET COMPRESSION {}"


def use_lz4(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
        )
        row = cursor.fetchone()
        if row and row[0]:
            cursor.execute(ALTER.format("lz4"))


def use_pglz(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(ALTER.format("pglz"))


class Migration(migrations.Migration):
    dependencies = [
        ("payments", "0006_agentpayment_no_redundant_fk_indexes"),
    ]

    operations = [migrations.RunPython(use_lz4, use_pglz)]
