"""Zero-sum per transaction as a hand-written deferred constraint trigger.

Migration 0005 made it a pgtrigger trigger; pgtrigger's functions skip themselves when
the session sets ``pgtrigger.ignore``, a setting any role may change, so the runtime role
could have written an unbalanced transaction. This function has no such switch: only the
owner (who may drop the trigger) can get around it.
"""

import pgtrigger.migrations
from django.db import migrations

BALANCED_SQL = """
CREATE FUNCTION ledger_entry_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM ledger_entry
        WHERE transaction_id = NEW.transaction_id
        GROUP BY currency
        HAVING sum(amount) <> 0
    ) THEN
        RAISE EXCEPTION 'ledger transaction % does not sum to zero', NEW.transaction_id
            USING ERRCODE = 'check_violation', HINT = 'unbalanced_transaction';
    END IF;
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER ledger_entry_balanced
    AFTER INSERT ON ledger_entry
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_entry_balanced();
"""

DROP_SQL = """
DROP TRIGGER ledger_entry_balanced ON ledger_entry;
DROP FUNCTION ledger_entry_balanced();
"""


class Migration(migrations.Migration):
    dependencies = [
        ("ledger", "0005_ledger_guards_itself"),
    ]

    operations = [
        pgtrigger.migrations.RemoveTrigger(model_name="entry", name="balanced"),
        migrations.RunSQL(BALANCED_SQL, DROP_SQL),
    ]
