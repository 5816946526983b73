"""Never pay twice: a leaf's outcomes kept across runs (``agent.cache(store)``).

The :class:`~combinators.Cache` interface is in ``_cache_store``; here are
the memory and SQLite stores and the leaf layer the interpreter applies to
a cached leaf (registered with ``_plan.wraps_leaves``).

An entry's key is the journal's, without the run id: the leaf's name, its
``versioned()`` version and the SHA-256 of its canonical input (so any later
run, in any process sharing the store, finds it).  Values follow the
journal's rule: a value that would not come back from JSON as itself is
refused when it is stored, with the journal's messages.  Successes are
kept; permanent failures (an error whose ``permanent`` is true) too with
``failures=True``.  A hit runs nothing, takes no limiter slot and reserves
and charges nothing (the layer sits outside admission and budgets).

**Single flight.**  Identical calls in flight at once — the same key, in
one run or in concurrent runs of one trio loop — run once: the first call
(the *leader*) runs the leaf in a child task, the others wait for its
outcome.  A waiter that is cancelled just stops waiting.  A cancelled
leader stops the call only when nobody else waits for it; otherwise it
waits (its caller's cancellation is delayed) until the call ends or the
last waiter leaves.  A call that ends without an outcome (cancelled, or an
exception — a bug, raised in the leader) leaves its waiters to try again.

**Time to live** is wall-clock time (``time.time()``): entries outlive runs
and processes, where trio's clock means nothing.  Each store takes a
``clock`` (seconds, a callable) for tests.
"""

from __future__ import annotations

import sqlite3
import threading
from typing import TYPE_CHECKING, Any, Final

import attrs
import cattrs
import trio
from returns.result import Failure, Result, Success

from ._cache_store import Cache, CachePolicy, Clock, Entry, cache_key
from ._journal import (
    converter_or_shared,
    _decode,
    _checked_info,
    _stored,
    leaf_input_hash,
)
from ._observe import ATTEMPT, EventKind, emit
from ._plan import wraps_leaves

if TYPE_CHECKING:
    from ._expr import Leaf
    from ._plan import Compiler, Env
    from ._types import Runner

class MemoryCache(Cache):
    """A cache in this process's memory (see :meth:`Cache.memory`)."""

    def __init__(self, *, converter: cattrs.Converter | None = None, clock: Clock | None = None) -> None:
        super().__init__(converter=converter_or_shared(converter), clock=clock)
        self._entries: dict[str, Entry] = {}

    def __repr__(self) -> str:
        return "Cache.memory()"

    async def get(self, key: str) -> Entry | None:
        await trio.lowlevel.checkpoint()
        return self._live(self._entries.get(key))

    async def put(self, key: str, name: str, version: str | None, entry: Entry) -> None:
        self._entries[key] = entry
        await trio.lowlevel.checkpoint()

    def __len__(self) -> int:
        return len(self._entries)


_SQLITE_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS combinators_cache (
    key TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    version TEXT,
    ok INTEGER NOT NULL,
    payload TEXT NOT NULL,
    expires REAL
) WITHOUT ROWID;
"""


class _Reads:
    """Keys asked for in one scheduling round, answered by one query."""

    __slots__ = ("answers", "done", "keys")

    def __init__(self, keys: set[str]) -> None:
        self.keys = keys
        self.done = trio.Event()
        self.answers: dict[str, Entry] | None = None


class SqliteCache(Cache):
    """A cache in an SQLite file (see :meth:`Cache.sqlite`).

    Reads that arrive while one is in a worker thread are gathered and
    answered by the next single query (group reads), so a fan-out of hits
    costs a few thread hops, not one per leaf.
    """

    def __init__(self, path: str, *, converter: cattrs.Converter | None = None, clock: Clock | None = None) -> None:
        super().__init__(converter=converter_or_shared(converter), clock=clock)
        self.path = path
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        #: The read being gathered, per trio run.
        self._pending: dict[object, _Reads] = {}

    def __repr__(self) -> str:
        return f"Cache.sqlite({self.path!r})"

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=30000")
            conn.executescript(_SQLITE_SCHEMA)
            self._conn = conn
        return self._conn

    def _read(self, keys: list[str]) -> dict[str, Entry]:
        with self._lock:
            conn = self._connection()
            out: dict[str, Entry] = {}
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                marks = ",".join("?" * len(chunk))
                for key, ok, payload, expires in conn.execute(
                    f"SELECT key, ok, payload, expires FROM combinators_cache WHERE key IN ({marks})", chunk
                ):
                    out[key] = Entry(bool(ok), payload, expires)
            return out

    def _write(self, key: str, name: str, version: str | None, entry: Entry) -> None:
        with self._lock:
            self._connection().execute(
                "INSERT OR REPLACE INTO combinators_cache (key, name, version, ok, payload, expires) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (key, name, version, int(entry.ok), entry.payload, entry.expires),
            )

    async def get(self, key: str) -> Entry | None:
        loop = trio.lowlevel.current_trio_token()
        while True:
            batch = self._pending.get(loop)
            if batch is not None:
                # A read is being gathered in this scheduling round: join it.
                batch.keys.add(key)
                await batch.done.wait()
            else:
                batch = self._pending[loop] = _Reads({key})
                try:
                    # Let the other tasks of this round add their keys.
                    await trio.lowlevel.checkpoint()
                    del self._pending[loop]
                    batch.answers = await trio.to_thread.run_sync(self._read, sorted(batch.keys))
                finally:
                    if self._pending.get(loop) is batch:
                        del self._pending[loop]
                    batch.done.set()
            if batch.answers is not None:
                return self._live(batch.answers.get(key))
            # The gathering task was cancelled before it read: read again.

    async def put(self, key: str, name: str, version: str | None, entry: Entry) -> None:
        await trio.to_thread.run_sync(self._write, key, name, version, entry)

    def close(self) -> None:
        """Close the connection (the store stays usable: it opens a new one)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


# --------------------------------------------------------------------------
# The leaf layer


class _Flight:
    """One call in flight that identical calls wait for."""

    __slots__ = ("done", "outcome", "scope", "waiters", "leader_gone")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.outcome: Result[Any, Any] | None = None
        self.scope: trio.CancelScope | None = None
        self.waiters = 0
        self.leader_gone = False

    def leave(self) -> None:
        """A waiter stops waiting; the last one out stops a call nobody wants."""
        self.waiters -= 1
        if self.waiters == 0 and self.leader_gone and self.scope is not None:
            self.scope.cancel()


@wraps_leaves(CachePolicy)
def cache_layer(c: Compiler, leaf: Leaf[Any, Any, Any], env: Env, runner: Runner) -> Runner:
    """The leaf runner answered from, and recorded into, the leaf's cache."""
    policy: CachePolicy = leaf.cached
    store, ttl, failures = policy.store, policy.ttl, policy.failures
    converter = converter_or_shared(store.converter)
    info = _checked_info(leaf, leaf.name, converter, store="cache", errors=failures)
    name, version = info.name, info.version
    observed, kind = c.observed, leaf.kind
    flights: dict[tuple[object, str], _Flight] = store.flights

    def report(result: Result[Any, Any], path: str) -> None:
        attempt = ATTEMPT.get()
        emit(EventKind.STARTED, path, node=kind, attempt=attempt)
        emit(EventKind.CACHED, path, node=kind, attempt=attempt)
        if isinstance(result, Success):
            emit(EventKind.SUCCEEDED, path, node=kind, attempt=attempt, value=result.unwrap())
        else:
            emit(EventKind.FAILED, path, node=kind, attempt=attempt, error=result.failure())

    async def record(result: Result[Any, Any], key: str, path: str) -> None:
        # The journal's rule, from the journal's own function: a value that
        # would not come back as itself is refused now, naming the leaf.
        if isinstance(result, Failure) and not failures:
            return
        stored = _stored(converter, result, info, path)
        if stored is None:
            return
        ok, payload = stored
        expires = None if ttl is None else store.clock() + ttl
        await store.put(key, name, version, Entry(ok, payload, expires))

    async def lead(x: Any, path: str, key: str, flight: _Flight, slot: tuple[object, str]) -> Result[Any, Any]:
        ended = trio.Event()
        # Shielded: a cancelled leader stops the call only when no one else
        # waits for it (``_Flight.leave``).  Made before the call's task
        # starts, so a leader cancelled before then can still cancel it (a
        # scope cancelled before it is entered starts cancelled).
        scope = flight.scope = trio.CancelScope(shield=True)

        async def call() -> None:
            try:
                with scope:
                    result = await runner(x, path)
                    await record(result, key, path)
                    flight.outcome = result
            finally:
                ended.set()

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(call)
                try:
                    await ended.wait()
                except trio.Cancelled:
                    flight.leader_gone = True
                    if flight.waiters == 0 and flight.scope is not None:
                        flight.scope.cancel()
                    raise
        except BaseExceptionGroup as group:
            raise _single(group) from None
        finally:
            if flights.get(slot) is flight:
                del flights[slot]
            flight.done.set()
        assert flight.outcome is not None
        return flight.outcome

    async def run_cached(x: Any, path: str) -> Result[Any, Any]:
        key = cache_key(name, version, leaf_input_hash(converter, x, "cache", path))
        slot = (trio.lowlevel.current_trio_token(), key)
        while True:
            entry = await store.get(key)
            if entry is not None:
                value = _decode(converter, entry.ok, entry.payload, info)
                result: Result[Any, Any] = Success(value) if entry.ok else Failure(value)
                if observed:
                    report(result, path)
                return result
            flight = flights.get(slot)
            if flight is None:
                flight = flights[slot] = _Flight()
                return await lead(x, path, key, flight, slot)
            flight.waiters += 1
            try:
                await flight.done.wait()
            finally:
                flight.leave()
            if flight.outcome is not None:
                if observed:
                    report(flight.outcome, path)
                return flight.outcome
            # The call ended without an outcome: try again (maybe lead it).

    return run_cached


def _single(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one exception a leader's nursery wrapped (a bug in the leaf, or a cancel)."""
    while isinstance(group, BaseExceptionGroup) and len(group.exceptions) == 1:
        inner = group.exceptions[0]
        if not isinstance(inner, BaseExceptionGroup):
            return inner
        group = inner
    return group


__all__ = ["Cache", "MemoryCache", "SqliteCache", "cache_key"]
