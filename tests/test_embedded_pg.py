"""Which database URL the project uses (billing_site/embedded_pg.py), without a server.

The embedded server itself is exercised by .ci/embedded-pg-check (run by .ci/run).
"""

import os
import shutil
import socket
import stat
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from billing_site import embedded_pg, ensure_db

EMBEDDED = "postgres://postgres@127.0.0.1:54329/billing"


@pytest.fixture
def listening():
    """A port something listens on."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server.getsockname()[1]


@pytest.fixture
def closed():
    """A port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def env(monkeypatch, tmp_path):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("EMBEDDED_PG_DIR", str(tmp_path / "pgdata"))
    (tmp_path / "pgdata").mkdir()
    return monkeypatch


def record(url=EMBEDDED):
    embedded_pg.state_file().write_text(url + "\n")


def test_answers(listening, closed):
    assert embedded_pg.answers(f"postgres://postgres@127.0.0.1:{listening}/billing")
    assert not embedded_pg.answers(f"postgres://postgres@127.0.0.1:{closed}/billing")


def test_configured_database_url_is_used_as_is(env, closed):
    record()
    env.setenv("DEFAULT_DATABASE_URL", f"postgres://postgres@127.0.0.1:{closed}/billing")
    env.setenv("DATABASE_URL", "postgres://u@db.example:6543/other")
    assert embedded_pg.database_url() == "postgres://u@db.example:6543/other"
    assert ensure_db.choose_url() == "postgres://u@db.example:6543/other"


def test_recorded_embedded_url_while_the_default_server_does_not_answer(env, closed):
    env.setenv("DEFAULT_DATABASE_URL", f"postgres://postgres@127.0.0.1:{closed}/billing")
    assert embedded_pg.database_url() == f"postgres://postgres@127.0.0.1:{closed}/billing"
    record()
    assert embedded_pg.database_url() == EMBEDDED


def test_default_server_wins_over_a_recorded_embedded_url(env, listening, capsys):
    default = f"postgres://postgres@127.0.0.1:{listening}/billing"
    env.setenv("DEFAULT_DATABASE_URL", default)
    record()
    assert embedded_pg.database_url() == default
    assert ensure_db.choose_url() == default
    assert not embedded_pg.state_file().exists()
    assert f"PostgreSQL answers at 127.0.0.1:{listening} again" in capsys.readouterr().out


def test_no_default_server_starts_the_embedded_one(env, closed, monkeypatch):
    env.setenv("DEFAULT_DATABASE_URL", f"postgres://postgres@127.0.0.1:{closed}/billing")
    started = []
    monkeypatch.setattr(
        embedded_pg,
        "ensure_server",
        lambda name, reason: started.append((name, reason)) or EMBEDDED,
    )
    assert ensure_db.choose_url() == EMBEDDED
    assert started == [("billing", f"No PostgreSQL at 127.0.0.1:{closed}")]


def test_a_directory_the_server_user_may_not_enter_is_named():
    """Run by root, the server runs as nobody: every directory above the data must let it in."""
    base = Path(tempfile.mkdtemp())  # not tmp_path: pytest's base directory is private
    try:
        os.chmod(base, 0o755)
        st = base.stat()
        nobody = SimpleNamespace(pw_name="nobody", pw_uid=st.st_uid + 1, pw_gid=st.st_gid + 1)
        if embedded_pg._unreachable(base, nobody) is not None:
            pytest.skip(f"{tempfile.gettempdir()} is private")
        private = base / "private"
        (private / "checkout").mkdir(parents=True)
        os.chmod(private, 0o700)
        assert embedded_pg._unreachable(private / "checkout", nobody) == private
        os.chmod(private, 0o700 | stat.S_IXOTH)
        assert embedded_pg._unreachable(private / "checkout", nobody) is None
    finally:
        shutil.rmtree(base)
