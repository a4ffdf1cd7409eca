"""A throwaway primary and streaming replica for the routing test.

The machine's PostgreSQL serves the tests but may refuse replication connections, so
this starts a primary of its own in a temporary directory (``initdb``: trust auth,
``wal_level=replica``, replication allowed from 127.0.0.1), loads the test database's
schema into it (``pg_dump --schema-only``), takes a base backup with
``pg_basebackup -R -X stream`` and starts that as a hot standby: a real replica that
replays the primary's WAL. Both listen on free ports of 127.0.0.1 and are stopped at
the end. Binaries: ``PG_BIN``, else the newest ``/usr/lib/postgresql/*/bin``, else
``pg_ctl`` on the PATH. Run as root, the servers run as ``postgres`` or ``nobody``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

DATABASE = "billing"


def pg_bin() -> Path | None:
    given = os.environ.get("PG_BIN")
    if given:
        return Path(given)
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    if found:
        return found[-1]
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _server_user() -> str | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("Run as root and found neither a postgres nor a nobody user.")


@dataclass
class Server:
    port: int
    data: Path

    def url(self, database: str = DATABASE) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"


class Cluster:
    """Commands against the temporary servers, as the user that owns their data."""

    def __init__(self, root: Path, binaries: Path) -> None:
        self.root = root
        self.bin = binaries
        self.user = _server_user()
        self.servers: list[Server] = []

    def run(self, program: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(self.bin / program), *args],
            check=True,
            capture_output=True,
            text=True,
            user=self.user,
            cwd=self.root,
            timeout=120,
            **kwargs,
        )

    def _own(self, path: Path) -> None:
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _configure(self, server: Server, extra: str = "") -> None:
        with open(server.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"\nport = {server.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = ''\nfsync = off\nwal_level = replica\n"
                f"max_wal_senders = 5\nhot_standby = on\n{extra}"
            )

    def start(self, server: Server) -> None:
        log = self.root / f"{server.data.name}.log"
        self.run("pg_ctl", "-D", str(server.data), "-l", str(log), "-w", "-t", "60", "start")
        self.servers.append(server)

    def primary(self) -> Server:
        self._own(self.root)
        server = Server(free_port(), self.root / "primary")
        self.run(
            "initdb", "-D", str(server.data), "-U", "postgres", "--auth=trust",
            "--encoding=UTF8", "--locale=C.UTF-8",
        )  # fmt: skip
        with open(server.data / "pg_hba.conf", "a") as hba:
            hba.write("\nhost replication all 127.0.0.1/32 trust\n")
        self._configure(server)
        self.start(server)
        return server

    def replica(self, primary: Server) -> Server:
        server = Server(free_port(), self.root / "replica")
        self.run(
            "pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
            "-D", str(server.data), "-R", "-X", "stream", "--checkpoint=fast",
        )  # fmt: skip
        self._configure(server)
        self.start(server)
        return server

    def stop_all(self) -> None:
        for server in reversed(self.servers):
            subprocess.run(
                [str(self.bin / "pg_ctl"), "-D", str(server.data), "-m", "immediate", "stop"],
                capture_output=True,
                user=self.user,
                timeout=60,
            )
        self.servers.clear()


@contextmanager
def primary_and_replica(schema_from: str) -> Iterator[tuple[Server, Server]]:
    """A primary holding ``schema_from``'s schema (a database URL) and its streaming replica.

    Their data lives in a fresh directory under the system's temporary directory (the
    server's user must be able to reach it), removed at the end.
    """
    binaries = pg_bin()
    if binaries is None or not (binaries / "pg_basebackup").exists():
        raise FileNotFoundError("no PostgreSQL binaries (initdb, pg_basebackup)")
    root = Path(tempfile.mkdtemp(prefix="billing-replica-"))
    cluster = Cluster(root, binaries)
    try:
        primary = cluster.primary()
        cluster.run("createdb", "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
                    DATABASE)  # fmt: skip
        schema = subprocess.run(
            [str(binaries / "pg_dump"), "--schema-only", "--no-owner", "--no-privileges",
             schema_from],
            check=True, capture_output=True, text=True, timeout=120,
        ).stdout  # fmt: skip
        subprocess.run(
            [str(binaries / "psql"), "-q", "-v", "ON_ERROR_STOP=1", primary.url()],
            input=schema, check=True, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        replica = cluster.replica(primary)
        deadline = time.monotonic() + 60
        while True:
            probe = subprocess.run(
                [str(binaries / "psql"), "-Atc", "SELECT pg_is_in_recovery()", replica.url()],
                capture_output=True, text=True, timeout=30,
            )  # fmt: skip
            if probe.stdout.strip() == "t":
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the replica did not come up: {probe.stderr}")
            time.sleep(0.2)
        yield primary, replica
    finally:
        cluster.stop_all()
        shutil.rmtree(root, ignore_errors=True)
