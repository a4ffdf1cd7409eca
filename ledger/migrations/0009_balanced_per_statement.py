"""Zero-sum checked once per INSERT statement instead of once per entry row at commit.

Migration 0006's deferred constraint trigger ran one query per entry row when the
inserting transaction committed: two to three per single posting (while the hot payer's
row lock was still held) and 400,000 for a 200,000-payment registry, a fifth of its time.

The rule it enforced: at commit, every ledger transaction's entries sum to zero per
currency. This migration enforces a stronger one in a single set-based query per
statement: the entries that one INSERT (or COPY) writes sum to zero per transaction and
currency. Entries are never updated nor deleted (privileges and the ``Protect`` triggers),
so by induction the entries of every transaction still sum to zero after every statement,
and therefore at every commit. Every writer already writes a transaction's entries in one
statement (``ledger.services.writer``: one CTE for a posting, one COPY for a batch).

Like 0006's, the trigger is written by hand: it honours no session setting, so only the
owner (who may drop it) could get around it; ``session_replication_role`` is
superuser-only. The existing entries are checked once here, so the induction starts from a
balanced ledger.
"""

from importlib import import_module

from django.db import migrations

BALANCED_SQL = """
DO $$
DECLARE bad bigint;
BEGIN
    SELECT transaction_id INTO bad FROM ledger_entry
     GROUP BY transaction_id, currency HAVING sum(amount) <> 0 LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'ledger transaction % does not sum to zero', bad
            USING ERRCODE = 'check_violation', HINT = 'unbalanced_transaction';
    END IF;
END
$$;
DROP TRIGGER ledger_entry_balanced ON ledger_entry;
DROP FUNCTION ledger_entry_balanced();
CREATE FUNCTION ledger_entry_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE bad bigint;
BEGIN
    SELECT transaction_id INTO bad FROM written
     GROUP BY transaction_id, currency HAVING sum(amount) <> 0 LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'ledger transaction % does not sum to zero', bad
            USING ERRCODE = 'check_violation', HINT = 'unbalanced_transaction';
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER ledger_entry_balanced
    AFTER INSERT ON ledger_entry
    REFERENCING NEW TABLE AS written
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_entry_balanced();
"""

# Back to 0006's deferred per-row trigger: drop this one, then 0006's own SQL.
DEFERRED_SQL = (
    """
DROP TRIGGER ledger_entry_balanced ON ledger_entry;
DROP FUNCTION ledger_entry_balanced();
"""
    + import_module("ledger.migrations.0006_balanced_not_ignorable").BALANCED_SQL
)


class Migration(migrations.Migration):
    dependencies = [
        ("ledger", "0008_entry_account_time_covering"),
    ]

    operations = [
        migrations.RunSQL(BALANCED_SQL, DEFERRED_SQL),
    ]
