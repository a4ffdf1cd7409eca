"""Exact, exception-free casts for the careful ingest path (see invoicing.ingest).

The fast path lets PostgreSQL's COPY parse numbers and ids and casts timestamps in bulk;
when any value is unreadable, the batch is staged again as text and these functions read
each value the same way, one at a time, turning a failure into NULL (a per-record error).
"""

from django.db import migrations

FUNCTIONS = """
CREATE OR REPLACE FUNCTION invoicing_try_bigint(value text) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    RETURN value::bigint;
EXCEPTION WHEN others THEN
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION invoicing_try_numeric(value text) RETURNS numeric
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    RETURN value::numeric;
EXCEPTION WHEN others THEN
    RETURN NULL;
END $$;

-- An ISO-8601-shaped moment (YYYY-MM-DD, then T or a space); without an offset or a zone
-- after the minutes it is read in the business time zone ``zone``.
CREATE OR REPLACE FUNCTION invoicing_try_moment(value text, zone text) RETURNS timestamptz
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
BEGIN
    IF NOT (substr(value, 5, 1) = '-' AND substr(value, 8, 1) = '-'
            AND substr(value, 11, 1) IN ('T', 't', ' ')) THEN
        RETURN NULL;
    END IF;
    IF ltrim(substr(value, 17), ':.0123456789') = '' THEN
        RETURN value::timestamp AT TIME ZONE zone;
    END IF;
    RETURN value::timestamptz;
EXCEPTION WHEN others THEN
    RETURN NULL;
END $$;
"""

DROP = """
DROP FUNCTION IF EXISTS invoicing_try_bigint(text);
DROP FUNCTION IF EXISTS invoicing_try_numeric(text);
DROP FUNCTION IF EXISTS invoicing_try_moment(text, text);
"""


class Migration(migrations.Migration):
    dependencies = [("invoicing", "0002_usage_without_fk_constraints")]

    operations = [migrations.RunSQL(FUNCTIONS, DROP)]
