"""A cache in PostgreSQL (``Cache.postgres``): shared by processes and machines.

psycopg 3 (extra ``postgres``) in trio worker threads; each call borrows an
idle connection or opens one.  One table, ``combinators_cache``, keyed like
the SQLite store.
"""

from __future__ import annotations

import threading
from typing import Any

import cattrs
import trio

from ._cache_store import Cache, Clock, Entry
from ._journal import converter_or_shared

try:
    import psycopg
except ImportError as exc:  # pragma: no cover - depends on the install
    _msg = "Cache.postgres() needs psycopg 3: install the extra with `pip install 'combinators[postgres]'`"
    raise ImportError(_msg) from exc

_SCHEMA = """
CREATE TABLE IF NOT EXISTS combinators_cache (
    key text PRIMARY KEY,
    name text NOT NULL,
    version text,
    ok boolean NOT NULL,
    payload text NOT NULL,
    expires double precision
);
"""


class PostgresCache(Cache):
    """A cache in PostgreSQL (see :meth:`Cache.postgres`)."""

    def __init__(self, dsn: str, *, converter: cattrs.Converter | None = None, clock: Clock | None = None) -> None:
        super().__init__(converter=converter_or_shared(converter), clock=clock)
        self.dsn = dsn
        self._idle: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()
        self._ready = False

    def __repr__(self) -> str:
        return "Cache.postgres(<dsn>)"

    def _borrow(self) -> psycopg.Connection[Any]:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        conn = psycopg.connect(self.dsn, autocommit=True)
        if not self._ready:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtext('combinators_cache_schema'))")
                conn.execute(_SCHEMA)
            self._ready = True
        return conn

    def _with_conn(self, fn: Any, *args: Any) -> Any:
        conn = self._borrow()
        try:
            out = fn(conn, *args)
        except BaseException:
            conn.close()
            raise
        with self._lock:
            self._idle.append(conn)
        return out

    @staticmethod
    def _read(conn: psycopg.Connection[Any], key: str) -> Entry | None:
        row = conn.execute("SELECT ok, payload, expires FROM combinators_cache WHERE key = %s", (key,)).fetchone()
        return None if row is None else Entry(bool(row[0]), str(row[1]), row[2])

    @staticmethod
    def _write(conn: psycopg.Connection[Any], key: str, name: str, version: str | None, entry: Entry) -> None:
        conn.execute(
            "INSERT INTO combinators_cache (key, name, version, ok, payload, expires) VALUES (%s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (key) DO UPDATE SET name = EXCLUDED.name, version = EXCLUDED.version, ok = EXCLUDED.ok, "
            "payload = EXCLUDED.payload, expires = EXCLUDED.expires",
            (key, name, version, entry.ok, entry.payload, entry.expires),
        )

    async def get(self, key: str) -> Entry | None:
        entry: Entry | None = await trio.to_thread.run_sync(self._with_conn, self._read, key)
        return self._live(entry)

    async def put(self, key: str, name: str, version: str | None, entry: Entry) -> None:
        await trio.to_thread.run_sync(self._with_conn, self._write, key, name, version, entry)

    def close(self) -> None:
        """Close the idle connections (the store stays usable)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
