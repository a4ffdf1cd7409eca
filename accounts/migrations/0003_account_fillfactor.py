from django.db import migrations


class Migration(migrations.Migration):
    """Leave room on each page of accounts_account for HOT updates.

    Every posting rewrites its payer's row (balance, held, counters). With full
    pages each new row version goes to another page and adds an entry to every
    index; a hot payer then drags a long trail of dead versions through its
    index scans until VACUUM runs. With free space on the page the update is
    HOT: no index changes, and the page prunes its own dead versions.
    """

    dependencies = [("accounts", "0002_number_sequence_and_search")]

    operations = [
        migrations.RunSQL(
            "ALTER TABLE accounts_account SET (fillfactor = 70)",
            "ALTER TABLE accounts_account RESET (fillfactor)",
        ),
    ]
