"""The staging table of parallel usage ingest (``invoicing.ingest_parallel``).

Each worker session stores the valid rows of its part of a file here, under the file's
load id, and commits; one publishing transaction then moves every row of the load into
``invoicing_usagerecord``, so a file is stored whole or not at all. UNLOGGED: the rows
are disposable until published (a server crash empties the table, which only drops
loads that were never published), and writing them costs no WAL. No index: a load is
read and deleted whole.
"""

from django.db import migrations

CREATE = """
CREATE SEQUENCE invoicing_usageload_id_seq;
CREATE UNLOGGED TABLE invoicing_usageload (
    load_id bigint NOT NULL,
    part integer NOT NULL,
    idx bigint NOT NULL,
    account_id bigint NOT NULL,
    service_id bigint NOT NULL,
    quantity numeric(20, 6) NOT NULL,
    occurred_at timestamptz NOT NULL,
    external_id varchar(100) NOT NULL,
    source varchar(100) NOT NULL,
    staged_at timestamptz NOT NULL DEFAULT now()
);
"""
DROP = """
DROP TABLE invoicing_usageload;
DROP SEQUENCE invoicing_usageload_id_seq;
"""


class Migration(migrations.Migration):
    dependencies = [("invoicing", "0006_inputs_transaction_ids")]

    operations = [migrations.RunSQL(CREATE, DROP)]
