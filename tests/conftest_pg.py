"""A throwaway PostgreSQL 15 server for the journal tests.

``.ci/services`` starts one and exports ``COMBINATORS_PG_DSN``; when that
variable is unset (a developer's machine), :func:`pg_server` starts its own
the same way: ``initdb`` in a temporary directory as a non-root user, on a
free port, trust authentication, one database.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _as_user() -> list[str]:
    if os.geteuid() != 0:
        return []
    return ["runuser", "-u", "postgres", "--"]


@contextmanager
def pg_server() -> Iterator[str]:
    """The DSN of a running server: ``COMBINATORS_PG_DSN`` or a fresh one."""
    dsn = os.environ.get("COMBINATORS_PG_DSN")
    if dsn:
        yield dsn
        return
    if not (PG_BIN / "initdb").exists() and os.geteuid() == 0 and shutil.which("apt-get"):
        # A fresh machine with only Python: install the server as .ci/services does.
        subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "postgresql-15"],
            check=False,
            capture_output=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    if not (PG_BIN / "initdb").exists():
        msg = "PostgreSQL 15 is not installed: run `source .ci/services` (it installs it) or set COMBINATORS_PG_DSN"
        raise RuntimeError(msg)
    if os.geteuid() == 0 and subprocess.run(["id", "postgres"], capture_output=True, check=False).returncode:
        subprocess.run(["useradd", "--system", "--no-create-home", "postgres"], check=True)
    base = Path(tempfile.mkdtemp(prefix="combinators-pg-"))
    user = _as_user()
    if user:
        shutil.chown(base, "postgres")
    data, log = base / "data", base / "log"
    port = _free_port()
    run = [*user]
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
                       capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
