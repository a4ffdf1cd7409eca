"""What a transaction has read from a table, for tests that a statement reads only its own rows."""


def rows_read(cursor, table: str) -> int:
    """Rows this transaction has read from ``table`` so far, by sequential or index scans."""
    cursor.execute(
        "SELECT COALESCE(seq_tup_read, 0) + COALESCE(idx_tup_fetch, 0)"
        " FROM pg_stat_xact_user_tables WHERE relname = %s",
        [table],
    )
    return cursor.fetchone()[0]
