# Who made an account's last status change, as a caller ref (user:<id>, partner:<id>,
# system:<name>): a partner may lift only a block that a partner set. Status changes
# recorded before this column were made by the staff user they name, if any.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0005_partnerclient_table"),
    ]

    operations = [
        migrations.AddField(
            model_name="account",
            name="status_changed_by_caller",
            field=models.CharField(
                blank=True,
                default="",
                db_default="",
                help_text="Who made the last status change: user:<id>, partner:<id> or system:<name>.",
                max_length=64,
            ),
        ),
        migrations.RunSQL(
            "UPDATE accounts_account SET status_changed_by_caller = 'user:' || status_changed_by_id"
            " WHERE status_changed_by_id IS NOT NULL",
            reverse_sql=migrations.RunSQL.noop,
        ),
    ]
