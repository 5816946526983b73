"""A PostgreSQL 15 server for the journal tests, never installed from here.

Where the server comes from, in order:

1. ``COMBINATORS_PG_DSN``: a server someone started (``source .ci/services``
   does, and CI sets it).  The tests then always run.
2. The installed PostgreSQL 15 binaries: a throwaway server (``initdb`` in a
   temporary directory, a free port, trust authentication), run as the
   current user, or — when that is root, which ``initdb`` refuses — as an
   existing ``postgres`` user.
3. Otherwise the tests are skipped with the reason and the way to run them.

The suite never changes the system: it installs no package and creates no
user (``.ci/services`` does both, for CI).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

PG_BIN = Path("/usr/lib/postgresql/15/bin")
HOW = "run `source .ci/services` (it installs and starts PostgreSQL 15) and then pytest, or set COMBINATORS_PG_DSN"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def server_source() -> tuple[str, list[str]] | str:
    """``("dsn", dsn)``, ``("binaries", command prefix)``, or why there is no server."""
    dsn = os.environ.get("COMBINATORS_PG_DSN")
    if dsn:
        return ("dsn", [dsn])
    if not (PG_BIN / "initdb").exists():
        return f"PostgreSQL 15 is not installed ({PG_BIN} has no initdb): {HOW}"
    if os.geteuid() != 0:
        return ("binaries", [])
    if not _user_exists("postgres") or shutil.which("runuser") is None:
        return f"initdb does not run as root and there is no `postgres` user to run it as: {HOW}"
    return ("binaries", ["runuser", "-u", "postgres", "--"])


@contextmanager
def pg_server() -> Iterator[str]:
    """The DSN of a running server (see the module docs); skips when there is none."""
    source = server_source()
    if isinstance(source, str):
        pytest.skip(source)
    how, args = source
    if how == "dsn":
        yield args[0]
        return
    run = args
    base = Path(tempfile.mkdtemp(prefix="combinators-pg-"))
    if run:
        shutil.chown(base, "postgres")
    data, log = base / "data", base / "log"
    port = _free_port()
    try:
        subprocess.run([*run, str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
                       check=True, capture_output=True)
        opts = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c max_connections=200"
        subprocess.run([*run, str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", opts, "-w", "start"],
                       check=True, capture_output=True)
        try:
            subprocess.run([*run, str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                            "combinators"], check=True, capture_output=True)
            yield f"postgresql://postgres@127.0.0.1:{port}/combinators"
        finally:
            subprocess.run([*run, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                           capture_output=True, check=False)
    finally:
        shutil.rmtree(base, ignore_errors=True)
