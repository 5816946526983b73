"""The PostgreSQL journal: several processes (or machines) share one run.

psycopg 3 (extra ``postgres``), used synchronously in trio worker threads
by one writer task per session (group commit, as for SQLite).

Leases.  Before a leaf runs, its row is *claimed*: ``state = 'leased'``
with this session's ``owner`` id and ``lease_until`` in the future
(database clock).  A claim succeeds only on a new row or one whose lease
has expired or was released.  While leaves run, one renewer task per
session pushes every lease it owns ``lease`` seconds ahead, every
``lease / 3`` seconds; without renewal a slow leaf would lose its lease
and two resumers could steal each other's leaves forever.  Only the owner
records a result (``UPDATE ... WHERE owner = me``); a process that finds
a leaf leased by someone else polls until it is recorded (then uses the
recorded value) or the lease expires (then claims and runs it).  A killed
process's leaves are taken over ``lease`` seconds after its last renewal.

Batches are sorted by key so two sessions lock rows in the same order;
a deadlock the server still detects (the renew statement locks rows in its
own order) is retried.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import cattrs
import trio

from ._exceptions import BuildError
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

try:
    import psycopg
    from psycopg import errors as pg_errors
except ImportError as exc:  # pragma: no cover - depends on the install
    _msg = "Journal.postgres() needs psycopg 3: install the extra with `pip install 'combinators[postgres]'`"
    raise ImportError(_msg) from exc

_SCHEMA = """
CREATE TABLE IF NOT EXISTS combinators_runs (
    run_id text PRIMARY KEY,
    manifest text NOT NULL
);
CREATE TABLE IF NOT EXISTS combinators_leaves (
    run_id text NOT NULL,
    path text NOT NULL,
    input_hash text NOT NULL,
    name text NOT NULL,
    version text,
    state text NOT NULL,
    owner text,
    lease_until timestamptz,
    attempts integer NOT NULL DEFAULT 0,
    ok boolean,
    payload text,
    PRIMARY KEY (run_id, path, input_hash)
);
"""

# Each statement handles a whole batch (arrays unnested, rows in key order),
# so a batch costs a few round trips, not a few per leaf.
_CLAIM = """
INSERT INTO combinators_leaves AS j
    (run_id, path, input_hash, name, version, state, owner, lease_until, attempts)
SELECT %(run)s, u.p, u.h, u.n, u.v, 'leased', %(owner)s, clock_timestamp() + %(lease)s * interval '1 second', 1
FROM unnest(%(paths)s::text[], %(hashes)s::text[], %(names)s::text[], %(versions)s::text[]) AS u(p, h, n, v)
ORDER BY u.p, u.h
ON CONFLICT (run_id, path, input_hash) DO UPDATE
    SET owner = EXCLUDED.owner, lease_until = EXCLUDED.lease_until, attempts = j.attempts + 1
    WHERE j.state = 'leased'
      AND (j.owner IS NULL OR j.owner = EXCLUDED.owner OR j.lease_until < clock_timestamp())
RETURNING j.path, j.input_hash, j.attempts
"""

_SELECT = """
SELECT j.path, j.input_hash, j.state, j.name, j.version, j.ok, j.payload
FROM combinators_leaves AS j
JOIN unnest(%(paths)s::text[], %(hashes)s::text[]) AS u(p, h) ON j.path = u.p AND j.input_hash = u.h
WHERE j.run_id = %(run)s
"""

_FINISH = """
UPDATE combinators_leaves AS j
SET state = 'done', ok = u.ok, payload = u.payload, name = u.n, version = u.v, owner = NULL, lease_until = NULL
FROM unnest(%(paths)s::text[], %(hashes)s::text[], %(names)s::text[], %(versions)s::text[],
            %(oks)s::boolean[], %(payloads)s::text[]) AS u(p, h, n, v, ok, payload)
WHERE j.run_id = %(run)s AND j.path = u.p AND j.input_hash = u.h
  AND j.owner = %(owner)s AND j.state = 'leased'
RETURNING j.path, j.input_hash
"""

_RELEASE = """
UPDATE combinators_leaves AS j SET owner = NULL, lease_until = '-infinity'
FROM unnest(%(paths)s::text[], %(hashes)s::text[]) AS u(p, h)
WHERE j.run_id = %(run)s AND j.path = u.p AND j.input_hash = u.h
  AND j.owner = %(owner)s AND j.state = 'leased'
"""

_RENEW = """
UPDATE combinators_leaves SET lease_until = clock_timestamp() + %(lease)s * interval '1 second'
WHERE run_id = %(run)s AND owner = %(owner)s AND state = 'leased'
"""

_RELEASE_ALL = """
UPDATE combinators_leaves SET owner = NULL, lease_until = '-infinity'
WHERE run_id = %(run)s AND owner = %(owner)s AND state = 'leased'
"""

_RETRIES = 8


def _connect(dsn: str) -> psycopg.Connection[Any]:
    conn = psycopg.connect(dsn, autocommit=True)
    with conn.transaction():
        # Several processes may create the tables at once: serialise that.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('combinators_journal_schema'))")
        conn.execute(_SCHEMA)
    return conn


def _claim_manifest(conn: psycopg.Connection[Any], run_id: str, manifest: str) -> str:
    with conn.transaction():
        conn.execute(
            "INSERT INTO combinators_runs (run_id, manifest) VALUES (%s, %s) ON CONFLICT (run_id) DO NOTHING",
            (run_id, manifest),
        )
        row = conn.execute("SELECT manifest FROM combinators_runs WHERE run_id = %s", (run_id,)).fetchone()
    assert row is not None
    return str(row[0])


class PostgresJournal(Journal):
    """A journal in PostgreSQL with leaf leases (see ``Journal.postgres``)."""

    def __init__(
        self,
        dsn: str,
        *,
        lease: float = 30.0,
        poll: float | None = None,
        converter: cattrs.Converter | None = None,
    ) -> None:
        if not isinstance(lease, int | float) or not lease > 0:
            msg = f"Journal.postgres(): lease must be > 0 seconds, got {lease!r}"
            raise BuildError(msg)
        if poll is not None and (not isinstance(poll, int | float) or not poll > 0):
            msg = f"Journal.postgres(): poll must be > 0 seconds, got {poll!r}"
            raise BuildError(msg)
        self.dsn = dsn
        self.lease = float(lease)
        self.poll = float(poll) if poll is not None else max(0.05, min(self.lease / 4, 1.0))
        self.converter = converter_or_shared(converter)

    def __repr__(self) -> str:
        return f"Journal.postgres(<dsn>, lease={self.lease!r})"

    @asynccontextmanager
    async def _session(self, run_id: str, manifest: str) -> AsyncIterator[Session]:
        conn = await trio.to_thread.run_sync(_connect, self.dsn)
        session = _PgSession(conn, run_id, self.lease, self.poll)
        try:
            stored = await trio.to_thread.run_sync(_claim_manifest, conn, run_id, manifest)
            check_manifest(run_id, stored, manifest)
            session.done = await trio.to_thread.run_sync(_load_done, conn, run_id)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(session.batcher.serve)
                nursery.start_soon(session.renew_forever)
                try:
                    yield session
                finally:
                    session.batcher.close()
                    session.renewing.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await session.batcher.flush()
                await trio.to_thread.run_sync(session.close)

    async def records(self, run_id: str) -> list[JournalRecord]:
        return await trio.to_thread.run_sync(self._records, run_id)

    def _records(self, run_id: str) -> list[JournalRecord]:
        with _connect(self.dsn) as conn:
            rows = conn.execute(
                "SELECT path, input_hash, name, version, attempts, state, ok FROM combinators_leaves "
                "WHERE run_id = %s ORDER BY path, input_hash",
                (run_id,),
            ).fetchall()
        return [
            JournalRecord(p, h, n, v, a, state == "done", ok if state == "done" else None)
            for p, h, n, v, a, state, ok in rows
        ]


def _load_done(conn: psycopg.Connection[Any], run_id: str) -> dict[Key, Record]:
    rows = conn.execute(
        "SELECT path, input_hash, name, version, ok, payload FROM combinators_leaves "
        "WHERE run_id = %s AND state = 'done'",
        (run_id,),
    ).fetchall()
    return {(p, h): Record(n, v, bool(ok), payload) for p, h, n, v, ok, payload in rows}


class _PgSession:
    def __init__(self, conn: psycopg.Connection[Any], run_id: str, lease: float, poll: float) -> None:
        self._conn = conn
        self.run_id = run_id
        self.owner = uuid.uuid4().hex
        self.lease = lease
        self.poll = poll
        self.batcher = Batcher(self._execute)
        self.renewing = trio.CancelScope()
        #: Records present when the session opened (done is final).
        self.done: dict[Key, Record] = {}

    async def begin(self, key: Key, name: str, version: str | None) -> Record | int:
        record = self.done.get(key)
        if record is not None:
            await trio.lowlevel.checkpoint()
            return record
        while True:
            got: Record | int | None = await self.batcher.submit(Op("begin", key, (name, version)))
            if got is not None:
                return got
            # Someone else holds a live lease: wait for its record or expiry.
            await trio.sleep(self.poll)

    async def finish(self, key: Key, name: str, version: str | None, ok: bool, payload: str) -> Record | None:
        while True:
            if await self.batcher.submit(Op("finish", key, (name, version, ok, payload))):
                return None
            # Our lease was taken over (we stalled past it): the new owner's
            # record wins; if it gave up too, we claim again and record ours.
            got = await self.begin(key, name, version)
            if isinstance(got, Record):
                return got

    def release(self, key: Key) -> None:
        self.batcher.submit_nowait(Op("release", key))

    async def renew_forever(self) -> None:
        with self.renewing:
            while True:
                await trio.sleep(self.lease / 3)
                await self.batcher.submit(Op("renew", ("", "")))

    def close(self) -> None:
        try:
            with self._conn.transaction():
                self._conn.execute(_RELEASE_ALL, {"run": self.run_id, "owner": self.owner})
        except psycopg.Error:
            pass  # leases left behind expire on their own
        finally:
            self._conn.close()

    def _execute(self, batch: list[Op]) -> None:
        for attempt in range(_RETRIES):
            try:
                with self._conn.transaction(), self._conn.cursor() as cur:
                    self._run_batch(cur, batch)
                return
            except (pg_errors.DeadlockDetected, pg_errors.SerializationFailure):
                if attempt == _RETRIES - 1:
                    raise

    def _run_batch(self, cur: psycopg.Cursor[Any], batch: list[Op]) -> None:
        base: dict[str, Any] = {"run": self.run_id, "owner": self.owner, "lease": self.lease}
        if any(op.kind == "renew" for op in batch):
            cur.execute(_RENEW, base)
        # Releases before claims: a retry may claim what a failure released.
        releases = sorted({op.key for op in batch if op.kind == "release"})
        if releases:
            cur.execute(_RELEASE, {**base, "paths": [k[0] for k in releases], "hashes": [k[1] for k in releases]})
        finishes = sorted((op for op in batch if op.kind == "finish"), key=lambda op: op.key)
        if finishes:
            params = {
                **base,
                "paths": [op.key[0] for op in finishes],
                "hashes": [op.key[1] for op in finishes],
                "names": [op.args[0] for op in finishes],
                "versions": [op.args[1] for op in finishes],
                "oks": [op.args[2] for op in finishes],
                "payloads": [op.args[3] for op in finishes],
            }
            mine = {(p, h) for p, h in cur.execute(_FINISH, params).fetchall()}
            for op in finishes:
                op.result = op.key in mine
        begins = [op for op in batch if op.kind == "begin"]
        while begins:
            # One statement may touch a row once: repeats of a key wait a round.
            seen: set[tuple[str, str]] = set()
            now: list[Op] = []
            later: list[Op] = []
            for op in begins:
                (later if op.key in seen else now).append(op)
                seen.add(op.key)
            self._claim(cur, base, sorted(now, key=lambda op: op.key))
            begins = later

    def _claim(self, cur: psycopg.Cursor[Any], base: dict[str, Any], ops: list[Op]) -> None:
        params = {
            **base,
            "paths": [op.key[0] for op in ops],
            "hashes": [op.key[1] for op in ops],
            "names": [op.args[0] for op in ops],
            "versions": [op.args[1] for op in ops],
        }
        claimed = {(p, h): int(a) for p, h, a in cur.execute(_CLAIM, params).fetchall()}
        missed = [op for op in ops if op.key not in claimed]
        found: dict[tuple[str, str], tuple[Any, ...]] = {}
        if missed:
            rows = cur.execute(
                _SELECT, {**base, "paths": [op.key[0] for op in missed], "hashes": [op.key[1] for op in missed]}
            ).fetchall()
            found = {(row[0], row[1]): row[2:] for row in rows}
        for op in ops:
            if op.key in claimed:
                op.result = claimed[op.key]
                continue
            row = found.get(op.key)
            if row is not None and row[0] == "done":
                op.result = Record(str(row[1]), row[2], bool(row[3]), str(row[4]))
            else:
                op.result = None  # leased by another owner: poll again
