"""The SQLite journal: stdlib ``sqlite3`` in worker threads, WAL.

One connection per run session, used only by the session's writer task (so
calls are serialised even though trio's worker threads vary).  Every batch of
queued operations is one ``BEGIN IMMEDIATE ... COMMIT``, committed before any
leaf of the batch returns its value downstream.  By default
(``synchronous=NORMAL``) a commit survives the process being killed but not
the machine losing power; ``fsync=True`` (``synchronous=FULL``) makes it
survive that too, at an fsync per commit.

SQLite journals are for one process at a time per run: there are no leases,
so two processes resuming the same run id at once may both run a leaf
(neither records it twice: the second commit overwrites the first).
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
import cattrs
import trio

from ._journal_store import (
    Journal,
    JournalRecord,
    Op,
    Batcher,
    converter_or_shared,
    Key,
    Record,
    Session,
    check_manifest,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS combinators_runs (
    run_id TEXT PRIMARY KEY,
    manifest TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS combinators_leaves (
    run_id TEXT NOT NULL,
    path TEXT NOT NULL,
    input_hash TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    done INTEGER NOT NULL DEFAULT 0,
    ok INTEGER,
    payload TEXT,
    PRIMARY KEY (run_id, path, input_hash)
) WITHOUT ROWID;
"""

_BEGIN = """
INSERT INTO combinators_leaves (run_id, path, input_hash, name, version, attempts)
VALUES (?, ?, ?, ?, ?, 1)
ON CONFLICT (run_id, path, input_hash) DO UPDATE SET attempts = attempts + 1 WHERE done = 0
"""

_FINISH = """
UPDATE combinators_leaves SET done = 1, ok = ?, payload = ?, name = ?, version = ?
WHERE run_id = ? AND path = ? AND input_hash = ?
"""


def _connect(path: str, fsync: bool = False) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL" if fsync else "PRAGMA synchronous=NORMAL")
    conn.executescript(_SCHEMA)
    return conn


class SqliteJournal(Journal):
    """A journal in an SQLite file: the embedded default (see ``Journal.sqlite``)."""

    def __init__(self, path: str, *, converter: cattrs.Converter | None = None, fsync: bool = False) -> None:
        self.path = str(path)
        self.converter = converter_or_shared(converter)
        self.fsync = fsync

    def __repr__(self) -> str:
        return f"Journal.sqlite({self.path!r}, fsync=True)" if self.fsync else f"Journal.sqlite({self.path!r})"

    @asynccontextmanager
    async def _session(self, run_id: str, manifest: str) -> AsyncIterator[Session]:
        conn = await trio.to_thread.run_sync(_connect, self.path, self.fsync)
        session: _SqliteSession | None = None
        try:
            stored = await trio.to_thread.run_sync(_claim_manifest, conn, run_id, manifest)
            check_manifest(run_id, stored, manifest)
            done, attempts = await trio.to_thread.run_sync(_load, conn, run_id)
            session = _SqliteSession(conn, run_id, done, attempts)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(session.batcher.serve)
                try:
                    yield session
                finally:
                    session.batcher.close()
        finally:
            with trio.CancelScope(shield=True):
                if session is not None:
                    await session.batcher.flush()
                await trio.to_thread.run_sync(conn.close)

    async def records(self, run_id: str) -> list[JournalRecord]:
        return await trio.to_thread.run_sync(self._records, run_id)

    def _records(self, run_id: str) -> list[JournalRecord]:
        conn = _connect(self.path)
        try:
            rows = conn.execute(
                "SELECT path, input_hash, name, version, attempts, done, ok FROM combinators_leaves "
                "WHERE run_id = ? ORDER BY path, input_hash",
                (run_id,),
            ).fetchall()
        finally:
            conn.close()
        return [
            JournalRecord(p, h, n, v, a, bool(d), None if not d else bool(ok)) for p, h, n, v, a, d, ok in rows
        ]


def _claim_manifest(conn: sqlite3.Connection, run_id: str, manifest: str) -> str | None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = conn.execute("SELECT manifest FROM combinators_runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            conn.execute("INSERT INTO combinators_runs (run_id, manifest) VALUES (?, ?)", (run_id, manifest))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return None if row is None else str(row[0])


def _load(conn: sqlite3.Connection, run_id: str) -> tuple[dict[Key, Record], dict[Key, int]]:
    rows = conn.execute(
        "SELECT path, input_hash, name, version, ok, payload, attempts, done FROM combinators_leaves WHERE run_id = ?",
        (run_id,),
    ).fetchall()
    done = {(p, h): Record(n, v, bool(ok), payload) for p, h, n, v, ok, payload, _, d in rows if d}
    attempts = {(p, h): a for p, h, _, _, _, _, a, d in rows if not d}
    return done, attempts


class _SqliteSession:
    def __init__(
        self, conn: sqlite3.Connection, run_id: str, done: dict[Key, Record], attempts: dict[Key, int]
    ) -> None:
        self._conn = conn
        self.run_id = run_id
        self.batcher = Batcher(self._execute)
        # Loaded once when the session opens.  One process per run id owns
        # the file's rows for the run, so these stay exact: a resume replays
        # records without a round trip, and a new leaf need not wait for its
        # attempt to be counted (the count goes into the next batch, ahead
        # of the leaf's result).
        self._done = done
        self._attempts = attempts

    async def begin(self, key: Key, name: str, version: str | None) -> Record | int:
        record = self._done.get(key)
        if record is not None:
            await trio.lowlevel.checkpoint()
            return record
        attempt = self._attempts.get(key, 0) + 1
        self._attempts[key] = attempt
        self.batcher.submit_nowait(Op("begin", key, (name, version)))
        return attempt

    async def finish(self, key: Key, name: str, version: str | None, ok: bool, payload: str) -> Record | None:
        await self.batcher.submit(Op("finish", key, (name, version, ok, payload)))
        # Recorded: a later start of this leaf in the same run (a retry of
        # an enclosing node) is answered from the journal, as on resume.
        self._done[key] = Record(name, version, ok, payload)
        return None

    def release(self, key: Key) -> None:
        pass  # no leases: a failed leaf simply stays unrecorded

    def _execute(self, batch: list[Op]) -> None:
        cur = self._conn.cursor()
        run_id = self.run_id
        cur.execute("BEGIN IMMEDIATE")
        try:
            for op in batch:
                path, digest = op.key
                if op.kind == "begin":
                    name, version = op.args
                    cur.execute(_BEGIN, (run_id, path, digest, name, version))
                else:
                    name, version, ok, payload = op.args
                    cur.execute(_FINISH, (int(ok), payload, name, version, run_id, path, digest))
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
