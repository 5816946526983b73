"""The journal's public handle and the interface its backends implement.

A backend (``_journal_sqlite``, ``_journal_postgres``, :class:`MemoryJournal`
here) subclasses :class:`Journal`: it opens a :class:`Session` per run
(``_session``) and lists a run's records (``records``).  What it needs for
that is here, under public-within-the-package names: a session answers
``begin``/``finish``/``release`` with records (:class:`Record`) keyed
by :data:`Key`; :class:`Batcher` groups the writes of a run into transactions;
:func:`check_manifest` refuses a run id recorded with another tree.  The
factories (``Journal.sqlite(...)``) make backends through :data:`BACKENDS`,
registered in ``_plugins``.  The leaf layer itself (hashing, recording,
replaying) is ``_journal``'s.
"""

from __future__ import annotations

import abc
import json
import math
import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Final

import attrs
import cattrs
import trio

from ._backends import Backends
from ._exceptions import BuildError, JournalMismatch
from ._expr import Agent
from ._journal import FORMAT, _describe, journal_layer, plan_tree, safe_repr
from ._journal import JournalRecord as JournalRecord
from ._journal import Key as Key
from ._journal import Record as Record
from ._journal import Session as Session
from ._journal import converter_or_shared as converter_or_shared
from ._plan import LeafLayer


#: A URL scheme (RFC 3986): a letter, then letters, digits, ``+``, ``-``
#: or ``.``, then ``:``.  ``./a:b.db`` has none (``.`` cannot start one).
_SCHEME: Final = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")


_KNOWN: Final = frozenset({"sqlite", "postgresql", "postgres", "memory"})


@attrs.define(eq=False)
class Op:
    """One queued journal operation; the writer sets ``result`` or ``error``."""

    kind: str
    key: Key
    args: tuple[Any, ...] = ()
    result: Any = None
    error: BaseException | None = None
    done: trio.Event | None = None


#: Ops in a row that fail alone like their batch did: the database is failing.
_GLOBAL_FAILURE: Final = 2


class Batcher:
    """Group commit: a writer task runs all queued operations in one batch.

    ``execute(batch)`` runs in a worker thread, in one transaction, and must
    set each op's ``result`` (or raise).  Leaves that finish while a batch
    is being written queue up and go into the next one, so a wide fan-out
    pays one transaction per batch, not one per leaf.  A batch that fails is
    written again op by op, so one bad record fails only its own leaf.
    Operations still queued when the session ends (a run that raised) are
    written by :meth:`flush`.
    """

    def __init__(self, execute: Callable[[list[Op]], None]) -> None:
        self._execute = execute
        self._send, self._recv = trio.open_memory_channel[Op](math.inf)

    async def submit(self, op: Op) -> Any:
        op.done = trio.Event()
        self._send.send_nowait(op)
        await op.done.wait()
        if op.error is not None:
            raise op.error
        return op.result

    def submit_nowait(self, op: Op) -> None:
        try:
            self._send.send_nowait(op)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass  # the session is closing; a lease left behind expires

    def close(self) -> None:
        self._send.close()

    async def serve(self) -> None:
        async for first in self._recv:
            await self._write([first, *self._queued()])

    async def flush(self) -> None:
        """Write what is still queued (after :meth:`close`), shielded."""
        with trio.CancelScope(shield=True):
            batch = self._queued()
            if batch:
                await self._write(batch)
        self._recv.close()

    def _queued(self) -> list[Op]:
        out: list[Op] = []
        while True:
            try:
                out.append(self._recv.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                return out

    async def _isolate(self, batch: list[Op], exc: Exception) -> None:
        """After ``batch`` failed with ``exc``: write its ops one by one.

        Two ops in a row failing like the batch did mean the database
        itself fails (locked, gone), not one record: the rest get ``exc``
        without more attempts, each of which could wait for a lock.
        """
        if len(batch) == 1:
            batch[0].error = exc
            return
        alike = 0
        for op in batch:
            if alike >= _GLOBAL_FAILURE:
                op.error = exc
                continue
            op.result = None
            try:
                await trio.to_thread.run_sync(self._execute, [op])
            except Exception as one:  # noqa: PERF203 - isolating the bad op
                op.error = one
                alike = alike + 1 if type(one) is type(exc) else 0
            else:
                alike = 0

    async def _write(self, batch: list[Op]) -> None:
        # Shielded: a batch taken off the queue is written and answered, so
        # a leaf that finished before a cancel keeps its record.
        with trio.CancelScope(shield=True):
            try:
                await trio.to_thread.run_sync(self._execute, batch)
            except Exception as exc:
                await self._isolate(batch, exc)
            for op in batch:
                if op.done is not None:
                    op.done.set()


class Journal(abc.ABC):
    """Where a durable run records its leaves: pass it to ``run(journal=...)``.

    Make one with :meth:`sqlite` (the embedded default), :meth:`postgres`
    (several processes sharing runs) or :meth:`memory` (tests).  A journal
    holds no connection between runs; each ``run`` opens its own session.
    ``converter`` (a cattrs converter) encodes inputs and outputs; register
    hooks on it for types cattrs does not know.

    >>> from combinators import run_sync
    >>> from combinators.testing import Calls, fake
    >>> journal, calls = Journal.memory(), Calls()
    >>> step = fake("step", fn=str.upper, calls=calls)
    >>> run_sync(step, "a", journal=journal, run_id="r1"), run_sync(step, "a", journal=journal, run_id="r1")
    (<Success: A>, <Success: A>)
    >>> len(calls.started)  # the second run replayed the recorded success
    1
"""

    converter: cattrs.Converter

    @staticmethod
    def sqlite(path: str, *, converter: cattrs.Converter | None = None, fsync: bool = False) -> Journal:
        """An SQLite journal in the file ``path`` (WAL, group commit).

        A commit survives the process being killed; with ``fsync=True`` it
        also survives the machine losing power, at an fsync per commit
        (which a long chain, committing once per step, feels most).
        """
        return BACKENDS.make("sqlite", path, converter=converter, fsync=fsync)

    @staticmethod
    def postgres(
        dsn: str,
        *,
        lease: float = 30.0,
        poll: float | None = None,
        converter: cattrs.Converter | None = None,
    ) -> Journal:
        """A PostgreSQL journal (psycopg 3, extra ``postgres``) with leaf leases.

        ``lease`` is how long (database clock, seconds) a claim lasts without
        renewal; it is renewed every ``lease / 3`` while the leaf runs.
        Processes waiting for another's leaf poll every ``poll`` seconds.
        """
        return BACKENDS.make("postgres", dsn, lease=lease, poll=poll, converter=converter)

    @staticmethod
    def memory(*, converter: cattrs.Converter | None = None) -> MemoryJournal:
        """A journal in this process's memory: for tests (survives runs, not crashes)."""
        return MemoryJournal(converter=converter)

    @staticmethod
    def from_url(url: str) -> Journal:
        """A journal from a URL, for command lines and configuration.

        ``postgresql://...`` (or ``postgres://``) is PostgreSQL;
        ``sqlite:PATH`` or ``sqlite:///PATH`` is SQLite, and so is a plain
        file path; ``memory:`` is an in-memory journal.  Anything else that
        starts like a URL scheme (letters, then ``:``) is refused, so a typo
        such as ``sqllite:runs.db`` never becomes a file of that name.  A
        file whose name holds a colon is written ``./a:b.db`` or
        ``sqlite:a:b.db``; a one-letter scheme is a Windows drive
        (``C:\\runs.db``).

        >>> Journal.from_url("sqlite:runs.db")
        Journal.sqlite('runs.db')
        >>> Journal.from_url("runs/today.db")
        Journal.sqlite('runs/today.db')
        >>> try:
        ...     Journal.from_url("sqllite:runs.db")
        ... except ValueError as exc:
        ...     print(str(exc).split(";")[0])
        Journal.from_url(): unknown journal scheme 'sqllite' in 'sqllite:runs.db'
        """
        if not isinstance(url, str) or not url:
            msg = f"Journal.from_url(): expected a non-empty URL, got {safe_repr(url)}"
            raise BuildError(msg)
        if url.startswith(("postgresql://", "postgres://")):
            return Journal.postgres(url)
        if url == "memory:":
            return Journal.memory()
        if url.startswith("sqlite:"):
            path = url.removeprefix("sqlite:")
            path = path.removeprefix("//") if path.startswith("///") else path
            if not path:
                msg = f"Journal.from_url(): {url!r} names no file"
                raise BuildError(msg)
            return Journal.sqlite(path)
        scheme = _SCHEME.match(url)
        if scheme is not None and scheme.group(1).lower() in _KNOWN:
            msg = (
                f"Journal.from_url(): {url!r} is not a journal URL; write "
                f"sqlite:PATH, postgresql://..., postgres://... or memory: (nothing after the colon)"
            )
            raise BuildError(msg)
        if scheme is not None and len(scheme.group(1)) > 1:
            msg = (
                f"Journal.from_url(): unknown journal scheme {scheme.group(1)!r} in {url!r}; known schemes: "
                f"sqlite:PATH, postgresql://..., postgres://..., memory: "
                f"(a plain path is an SQLite file: write ./NAME for a name with a colon)"
            )
            raise BuildError(msg)
        return Journal.sqlite(url)

    @asynccontextmanager
    async def _open_run(self, tree: Agent[Any, Any, Any], run_id: str) -> AsyncIterator[LeafLayer]:
        """The leaf layer for one run of ``tree`` as ``run_id`` (``_plan.Journal``, what ``run`` calls).

        Checks the tree (encodable outputs, the same shape as the recorded
        run), then opens a session that lasts as long as the run.
        """
        manifest, infos = plan_tree(tree, self.converter)
        async with self._session(run_id, manifest) as session:
            yield journal_layer(session, self.converter, infos)

    @abc.abstractmethod
    def _session(self, run_id: str, manifest: str) -> AbstractAsyncContextManager[Session]:
        """Open a session for ``run_id``; refuse a manifest unlike the recorded one."""

    @abc.abstractmethod
    async def records(self, run_id: str) -> list[JournalRecord]:
        """Every recorded leaf of ``run_id``, by path."""


def check_manifest(run_id: str, stored: str | None, manifest: str) -> None:
    """Raise :class:`JournalMismatch` if ``manifest`` differs from ``stored``.

    Manifests are compared by content (JSON spacing and key order do not
    matter); one that cannot be read is a mismatch at the run's root.
    """
    if stored is None or stored == manifest:
        return
    new = json.loads(manifest)
    new_nodes: list[list[Any]] = new["nodes"]
    root = str(new_nodes[0][0])
    try:
        old = json.loads(stored)
    except ValueError:
        raise JournalMismatch(run_id, root, "has a stored manifest that is not JSON") from None
    if not isinstance(old, dict) or old.get("format") != new["format"]:
        fmt = old.get("format") if isinstance(old, dict) else None
        raise JournalMismatch(
            run_id, root, f"was recorded by journal format {safe_repr(fmt)} (this version writes {FORMAT})"
        )
    old_nodes = old.get("nodes")
    if not isinstance(old_nodes, list) or not all(_is_entry(e) for e in old_nodes):
        raise JournalMismatch(run_id, root, "has a stored manifest whose nodes cannot be read")
    if old_nodes == new_nodes:
        return
    for (op, ok, on, ov), (np, nk, nn, nv) in zip(old_nodes, new_nodes, strict=False):
        if (op, ok, on, ov) != (np, nk, nn, nv):
            was = _describe(ok, on, ov)
            now = _describe(nk, nn, nv)
            at = "" if op == np else f" (recorded at {op!r})"
            raise JournalMismatch(run_id, np, f"was {was}{at} and is now {now}")
    if len(new_nodes) > len(old_nodes):
        np, nk, nn, nv = new_nodes[len(old_nodes)]
        raise JournalMismatch(run_id, np, f"is new ({_describe(nk, nn, nv)})")
    op, ok, on, ov = old_nodes[len(new_nodes)]
    raise JournalMismatch(run_id, op, f"was {_describe(ok, on, ov)} and is gone")


def _is_entry(entry: object) -> bool:
    """A manifest entry as this format writes it: ``[path, kind, name, version]``."""
    return (
        isinstance(entry, list)
        and len(entry) == 4
        and all(isinstance(part, str) for part in entry[:3])
        and (entry[3] is None or isinstance(entry[3], str))
    )


class MemoryJournal(Journal):
    """Records kept in a dict: deterministic and fast, for tests."""

    def __init__(self, *, converter: cattrs.Converter | None = None) -> None:
        self.converter = converter_or_shared(converter)
        self._manifests: dict[str, str] = {}
        self._rows: dict[tuple[str, str, str], list[Any]] = {}

    @asynccontextmanager
    async def _session(self, run_id: str, manifest: str) -> AsyncIterator[Session]:
        check_manifest(run_id, self._manifests.get(run_id), manifest)
        self._manifests.setdefault(run_id, manifest)
        yield _MemorySession(self, run_id)

    async def records(self, run_id: str) -> list[JournalRecord]:
        out = [
            JournalRecord(p, h, row[0], row[1], row[2], row[3] is not None, None if row[3] is None else row[3].ok)
            for (r, p, h), row in self._rows.items()
            if r == run_id
        ]
        return sorted(out, key=lambda rec: (rec.path, rec.input_hash))


class _MemorySession:
    def __init__(self, journal: MemoryJournal, run_id: str) -> None:
        self._rows = journal._rows
        self.run_id = run_id

    async def begin(self, key: Key, name: str, version: str | None) -> Record | int:
        row = self._rows.setdefault((self.run_id, *key), [name, version, 0, None])
        if row[3] is not None:
            await trio.lowlevel.checkpoint()
            record: Record = row[3]
            return record
        row[2] += 1
        attempt: int = row[2]
        return attempt

    async def finish(self, key: Key, name: str, version: str | None, ok: bool, payload: str) -> Record | None:
        row = self._rows[(self.run_id, *key)]
        row[3] = Record(name, version, ok, payload)
        await trio.lowlevel.checkpoint()
        return None

    def release(self, key: Key) -> None:
        pass


#: The journal backends (``Journal.sqlite``, ``Journal.postgres``), registered in ``_plugins``.
BACKENDS: Final[Backends[Journal]] = Backends("Journal")
