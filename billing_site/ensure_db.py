"""Make sure there is a database server and the database in use exists (``make run``).

- ``MIGRATION_DATABASE_URL`` (the owner, billing_site/database.py) or else ``DATABASE_URL``
  set: used as is; if its server does not answer, fail and say so.
- ``DATABASE_URL`` unset: ``DEFAULT_DATABASE_URL`` (``127.0.0.1:5432/billing``) when a
  server answers there, otherwise the embedded PostgreSQL in ``./.pgdata``, started (and
  created on first use) here; see ``billing_site/embedded_pg.py`` for how the other
  commands then find it.

``--server-only`` (``make test``) stops after the server: pytest creates its own database.
"""

import argparse
import os
import sys

import dj_database_url

from billing_site import embedded_pg


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    config = dj_database_url.parse(url)
    host = config.get("HOST") or "localhost"
    return f"{config.get('USER') or ''}@{host}:{config.get('PORT') or 5432}/{config['NAME']}"


def choose_url() -> str:
    """The owner's URL (``MIGRATION_DATABASE_URL``, else ``DATABASE_URL``), starting the
    embedded server when it is the one."""
    configured = os.environ.get("MIGRATION_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if configured:
        return configured
    default = embedded_pg.default_url()
    host, port = embedded_pg.host_port(default)
    if embedded_pg.answers(default):
        if embedded_pg.forget():
            print(
                f"PostgreSQL answers at {host}:{port} again: using it, no longer the embedded "
                f"one (still running? make db-stop stops it)."
            )
        return default
    name = dj_database_url.parse(default)["NAME"]
    return embedded_pg.ensure_server(name, reason=f"No PostgreSQL at {host}:{port}")


def create_database(url: str) -> None:
    import psycopg
    from psycopg import sql

    config = dj_database_url.parse(url)
    params = {
        "host": config.get("HOST") or None,
        "port": config.get("PORT") or None,
        "user": config.get("USER") or None,
        "password": config.get("PASSWORD") or None,
        "dbname": "postgres",
        "autocommit": True,
    }
    name = config["NAME"]
    with psycopg.connect(**{k: v for k, v in params.items() if v is not None}) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            print(f"Created database {name}.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--server-only", action="store_true", help="make sure a server runs, create nothing"
    )
    args = parser.parse_args(argv)
    try:
        url = choose_url()
    except embedded_pg.EmbeddedPostgresError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.server_only:
        return 0
    import psycopg

    try:
        create_database(url)
    except psycopg.OperationalError as exc:
        print(f"error: cannot connect to PostgreSQL at {_safe(url)}:\n{exc}", file=sys.stderr)
        if os.environ.get("MIGRATION_DATABASE_URL") or os.environ.get("DATABASE_URL"):
            print(
                "DATABASE_URL is used as is: start that server, fix the URL, or unset it "
                "(without DATABASE_URL and with no server on 127.0.0.1:5432, an embedded "
                "PostgreSQL starts).",
                file=sys.stderr,
            )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
