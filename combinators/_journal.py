"""Durable runs: a journal of leaf results that lets a crashed run resume.

Only leaves are journaled; combinators are re-evaluated on resume.  Each
leaf run is keyed by ``(run id, node path, input hash)`` where the input
hash is the SHA-256 of the leaf's input encoded canonically (cattrs
unstructure, then JSON with sorted keys).  A leaf's success is committed
before anything downstream sees it; on resume a recorded leaf is answered
from the journal without calling its function.

The pieces:

* :class:`Journal` — the public handle: ``Journal.sqlite(path)`` (embedded,
  one process at a time), ``Journal.postgres(dsn)`` (several processes, with
  leases), ``Journal.memory()`` (tests).
* a *session* per run (``_Session``): ``begin`` a leaf (its recorded
  outcome, or the attempt number it may run as), ``finish`` it (commit),
  ``release`` it (give up a claim after a failure or a cancel).
* :class:`_Batcher` — group commit: one writer task drains every queued
  operation into one transaction, so leaves finishing together share an
  fsync.
* :func:`run_journaled` — what ``run(..., journal=, run_id=)`` calls: checks
  the tree (encodable outputs, same shape as the recorded run), opens a
  session and compiles the tree with the journal's leaf layer.
"""

from __future__ import annotations

import abc
import contextvars
import dataclasses
import hashlib
import json
import math
import re
import reprlib
import types
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar, Union, get_args, get_origin, get_type_hints, runtime_checkable

import attrs
import cattrs
import trio
from returns.result import Failure, Result, Success

from ._chain import _CHAIN_KINDS, chain_parts
from ._exceptions import AgentTypeError, BuildError, Crashed
from ._expr import Agent, Leaf, LeafMode, _fn_name
from ._observe import ATTEMPT, EventKind, emit
from ._plan import Compiler, Env, LeafLayer, segments
from ._types import Runner

if TYPE_CHECKING:
    from ._journal_postgres import PostgresJournal
    from ._journal_sqlite import SqliteJournal

_A = TypeVar("_A", bound=Agent[Any, Any, Any])

#: A URL scheme (RFC 3986): a letter, then letters, digits, ``+``, ``-``
#: or ``.``, then ``:``.  ``./a:b.db`` has none (``.`` cannot start one).
_SCHEME: Final = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")

_KNOWN: Final = frozenset({"sqlite", "postgresql", "postgres", "memory"})

#: Bumped when the stored encoding changes; part of every manifest.
FORMAT: Final = 2


# --------------------------------------------------------------------------
# Public values


class JournalMismatch(BuildError):
    """The tree given for a run id is not the tree the journal recorded.

    ``path`` names the first node that differs (in the order ``walk()``
    visits nodes).  Start a new run id, or restore the tree, to go on.

    >>> from combinators import pure, run_sync
    >>> journal = Journal.memory()
    >>> run_sync(pure(str.upper).named("step"), "a", journal=journal, run_id="r1")
    <Success: A>
    >>> try:
    ...     run_sync(pure(str.lower).named("other"), "a", journal=journal, run_id="r1")
    ... except JournalMismatch as exc:
    ...     print(exc.run_id, exc.path)
    r1 other
    """

    def __init__(self, run_id: str, path: str, detail: str) -> None:
        self.run_id = run_id
        self.path = path
        super().__init__(
            f"journal run {run_id!r} was recorded with a different tree: node {path!r} {detail}; "
            f"resume it with the tree it was started with, or use a new run_id"
        )


@attrs.frozen
class LeafContext:
    """What a journaled leaf knows about its own run (see :func:`current_leaf`).

    ``attempt`` counts every start of this leaf at this position with this
    input, across retries and resumed runs (1 the first time).
    ``idempotency_key`` is the same for every attempt, so an external
    service can deduplicate the side effects of an at-least-once leaf;
    ``input_hash`` is the SHA-256 of the leaf's canonical input.

    >>> from returns.result import Result, Success
    >>> from combinators import agent, run_sync
    >>> @agent
    ... async def send(text: str) -> Result[str, str]:
    ...     ctx = current_leaf()
    ...     assert ctx is not None and len(ctx.idempotency_key) == 64
    ...     return Success(f"{ctx.run_id} {ctx.path} attempt {ctx.attempt}")
    >>> run_sync(send, "hi", journal=Journal.memory(), run_id="r1")
    <Success: r1 send attempt 1>
    """

    run_id: str
    path: str
    attempt: int
    input_hash: str

    @property
    def idempotency_key(self) -> str:
        """SHA-256 of run id, node path and input hash: one per leaf run."""
        return idempotency_key(self.run_id, self.path, self.input_hash)


_CURRENT: contextvars.ContextVar[LeafContext | None] = contextvars.ContextVar("combinators_leaf", default=None)


def current_leaf() -> LeafContext | None:
    """The journaled leaf running in this task, or ``None`` outside one.

    >>> current_leaf() is None
    True
    """
    return _CURRENT.get()


@runtime_checkable
class Permanent(Protocol):
    """An error value that says whether it is permanent.

    A failure is journaled (and replayed on resume, instead of running the
    leaf again) only when its error value has a true ``permanent``
    attribute.  Other failures are transient: the leaf runs again on resume.

    >>> import attrs
    >>> from returns.result import Failure, Result
    >>> from combinators import agent, run_sync
    >>> @attrs.frozen
    ... class Refused:
    ...     permanent: bool = True
    >>> isinstance(Refused(), Permanent)
    True
    >>> calls = []
    >>> @agent
    ... async def pay(amount: int) -> Result[str, Refused]:
    ...     calls.append(amount)
    ...     return Failure(Refused())
    >>> journal = Journal.memory()
    >>> [run_sync(pay, 5, journal=journal, run_id="r1") for _ in range(2)], calls
    ([<Failure: Refused(permanent=True)>, <Failure: Refused(permanent=True)>], [5])
    """

    @property
    def permanent(self) -> bool: ...


def _is_permanent(error: object) -> bool:
    return bool(isinstance(error, Permanent) and error.permanent)


@attrs.frozen
class JournalRecord:
    """One row of a journal, as :meth:`Journal.records` lists them.

    >>> import trio
    >>> from combinators import pure, run_sync
    >>> journal = Journal.memory()
    >>> _ = run_sync(pure(str.upper).named("up"), "a", journal=journal, run_id="r1")
    >>> [(r.path, r.name, r.attempts, r.done, r.ok) for r in trio.run(journal.records, "r1")]
    [('up', 'up', 1, True, True)]
    """

    path: str
    input_hash: str
    name: str
    version: str | None
    attempts: int
    done: bool
    ok: bool | None


class _Versioned:
    """A leaf function tagged with a user version (see :func:`versioned`)."""

    __slots__ = ("__name__", "fn", "version")

    def __init__(self, fn: Callable[[Any], Any], version: str) -> None:
        self.fn = fn
        self.version = version
        self.__name__ = _fn_name(fn)

    def __call__(self, x: Any) -> Any:
        return self.fn(x)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Versioned) and other.fn == self.fn and other.version == self.version

    def __hash__(self) -> int:
        return hash((self.fn, self.version))


def versioned(leaf: _A, version: str) -> _A:
    """The same leaf, tagged with a version the journal records.

    Bump the version when a leaf's behaviour changes: resuming a run that
    recorded another version is refused (:class:`JournalMismatch`), instead
    of silently mixing old and new results.

    >>> from combinators import pure
    >>> versioned(pure(str.upper), "v2").name
    'upper'
    """
    if not isinstance(leaf, Leaf):
        msg = f"versioned(): expected a leaf made by agent(), lift() or pure(), got {leaf!r}"
        raise AgentTypeError(msg)
    if not isinstance(version, str) or not version:
        msg = f"versioned({leaf.name!r}): the version must be a non-empty string, got {version!r}"
        raise BuildError(msg)
    fn = leaf.fn.fn if isinstance(leaf.fn, _Versioned) else leaf.fn
    made: Any = attrs.evolve(leaf, fn=_Versioned(fn, version))
    result: _A = made
    return result


def _leaf_version(leaf: Leaf[Any, Any, Any]) -> str | None:
    return leaf.fn.version if isinstance(leaf.fn, _Versioned) else None


# --------------------------------------------------------------------------
# Sessions and group commit


@attrs.frozen
class _Record:
    """A finished leaf as stored: ``payload`` is the JSON of the value/error."""

    name: str
    version: str | None
    ok: bool
    payload: str


#: (node path, input hash): the key of a leaf run inside one run id.
_Key = tuple[str, str]


class _Session(Protocol):
    """One run's connection to a journal."""

    run_id: str

    async def begin(self, key: _Key, name: str, version: str | None) -> _Record | int:
        """The recorded outcome of ``key``, or the attempt number to run it as."""
        ...

    async def finish(self, key: _Key, name: str, version: str | None, ok: bool, payload: str) -> _Record | None:
        """Commit an outcome; ``None`` once durable, or another owner's record."""
        ...

    def release(self, key: _Key) -> None:
        """Give up the claim on ``key`` without recording anything (no wait)."""
        ...


@attrs.define(eq=False)
class Op:
    """One queued journal operation; the writer sets ``result`` or ``error``."""

    kind: str
    key: _Key
    args: tuple[Any, ...] = ()
    result: Any = None
    error: BaseException | None = None
    done: trio.Event | None = None


#: Ops in a row that fail alone like their batch did: the database is failing.
_GLOBAL_FAILURE: Final = 2


class _Batcher:
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


# --------------------------------------------------------------------------
# The public handle


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
    def sqlite(path: str, *, converter: cattrs.Converter | None = None, fsync: bool = False) -> SqliteJournal:
        """An SQLite journal in the file ``path`` (WAL, group commit).

        A commit survives the process being killed; with ``fsync=True`` it
        also survives the machine losing power, at an fsync per commit
        (which a long chain, committing once per step, feels most).
        """
        from ._journal_sqlite import SqliteJournal

        return SqliteJournal(path, converter=converter, fsync=fsync)

    @staticmethod
    def postgres(
        dsn: str,
        *,
        lease: float = 30.0,
        poll: float | None = None,
        converter: cattrs.Converter | None = None,
    ) -> PostgresJournal:
        """A PostgreSQL journal (psycopg 3, extra ``postgres``) with leaf leases.

        ``lease`` is how long (database clock, seconds) a claim lasts without
        renewal; it is renewed every ``lease / 3`` while the leaf runs.
        Processes waiting for another's leaf poll every ``poll`` seconds.
        """
        from ._journal_postgres import PostgresJournal

        return PostgresJournal(dsn, lease=lease, poll=poll, converter=converter)

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

    @abc.abstractmethod
    def _session(self, run_id: str, manifest: str) -> AbstractAsyncContextManager[_Session]:
        """Open a session for ``run_id``; refuse a manifest unlike the recorded one."""

    @abc.abstractmethod
    async def records(self, run_id: str) -> list[JournalRecord]:
        """Every recorded leaf of ``run_id``, by path."""


def _converter(converter: cattrs.Converter | None) -> cattrs.Converter:
    if converter is not None:
        return converter
    from ._json import converter as shared

    return shared


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


def _describe(kind: str, name: str, version: str | None) -> str:
    text = f"{kind} {name!r}"
    return text if version is None else f"{text} version {version!r}"


class MemoryJournal(Journal):
    """Records kept in a dict: deterministic and fast, for tests."""

    def __init__(self, *, converter: cattrs.Converter | None = None) -> None:
        self.converter = _converter(converter)
        self._manifests: dict[str, str] = {}
        self._rows: dict[tuple[str, str, str], list[Any]] = {}

    @asynccontextmanager
    async def _session(self, run_id: str, manifest: str) -> AsyncIterator[_Session]:
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

    async def begin(self, key: _Key, name: str, version: str | None) -> _Record | int:
        row = self._rows.setdefault((self.run_id, *key), [name, version, 0, None])
        if row[3] is not None:
            await trio.lowlevel.checkpoint()
            record: _Record = row[3]
            return record
        row[2] += 1
        attempt: int = row[2]
        return attempt

    async def finish(self, key: _Key, name: str, version: str | None, ok: bool, payload: str) -> _Record | None:
        row = self._rows[(self.run_id, *key)]
        row[3] = _Record(name, version, ok, payload)
        await trio.lowlevel.checkpoint()
        return None

    def release(self, key: _Key) -> None:
        pass


# --------------------------------------------------------------------------
# Checking the tree before a run


@attrs.frozen
class _LeafInfo:
    name: str
    version: str | None
    out_type: Any
    err_type: Any


def _hints(fn: Any) -> dict[str, Any]:
    target = fn.fn if isinstance(fn, _Versioned) else fn
    if not callable(target):
        return {}
    for candidate in (target, getattr(target, "__call__", None)):  # noqa: B004
        if candidate is None:
            continue
        try:
            hints = get_type_hints(candidate)
        except Exception:  # unresolvable annotations: treat as undeclared
            continue
        if "return" in hints:
            return hints
    return {}


def _leaf_info(leaf: Leaf[Any, Any, Any]) -> _LeafInfo:
    ret = _hints(leaf.fn).get("return", Any)
    out_type: Any = Any
    err_type: Any = Any
    if leaf.mode is LeafMode.RESULT:
        origin = get_origin(ret) or ret
        if isinstance(origin, type) and issubclass(origin, Result):
            args = get_args(ret)
            if len(args) == 2:
                out_type, err_type = args
    else:
        out_type = ret
    if isinstance(out_type, TypeVar):
        out_type = Any
    if isinstance(err_type, TypeVar):
        err_type = Any
    return _LeafInfo(leaf.name, _leaf_version(leaf), out_type, err_type)


def _unsupported(converter: cattrs.Converter, tp: Any) -> str | None:
    if tp is Any or tp is None or tp is type(None):
        return None
    try:
        converter.get_structure_hook(tp)
    except Exception as exc:
        return str(exc) or type(exc).__name__
    return None


def _may_be_permanent(tp: Any) -> list[type[Any]]:
    members = get_args(tp) if get_origin(tp) is not None and not isinstance(get_origin(tp), type) else (tp,)
    out: list[type[Any]] = []
    for m in members:
        cls = get_origin(m) or m
        if isinstance(cls, type) and "permanent" in dir(cls):
            out.append(m)
    return out


def _checked_info(
    leaf: Leaf[Any, Any, Any], path: str, converter: cattrs.Converter, *, store: str = "journal", errors: bool = True
) -> _LeafInfo:
    """The journal facts of ``leaf``; refuses types the converter cannot structure.

    ``store`` names what keeps the values (the journal, a cache) in the
    message; ``errors`` says whether permanent errors are kept too.
    """
    info = _leaf_info(leaf)
    problem = _unsupported(converter, info.out_type)
    if problem is not None:
        msg = (
            f"{store}: the output of leaf {path!r} ({info.out_type!r}) cannot be stored: {problem}; "
            f"return an encodable type or register hooks on the {store}'s converter"
        )
        raise AgentTypeError(msg)
    for perm in _may_be_permanent(info.err_type) if errors else ():
        problem = _unsupported(converter, perm)
        if problem is not None:
            msg = (
                f"{store}: the permanent error {perm!r} of leaf {path!r} cannot be stored: {problem}; "
                f"register hooks for it on the {store}'s converter"
            )
            raise AgentTypeError(msg)
    return info


#: A manifest entry: (run path, node kind, node name, leaf version).
_Entry = tuple[str, str, str, "str | None"]


def plan_tree(agent: Agent[Any, Any, Any], converter: cattrs.Converter) -> tuple[str, dict[int, _LeafInfo]]:
    """The tree's manifest (JSON) and the journal facts of each leaf.

    The manifest lists the nodes at the paths the interpreter runs them at:
    a chain is its flattened steps (``seq/inc[0]``, ``seq/inc[1]``, ...,
    from ``_chain.chain_parts``), so its size grows with the number of
    nodes, not with their depth.  Refuses, before anything runs, a leaf
    whose declared output (or permanent error) type the converter cannot
    structure.
    """
    nodes: list[_Entry] = []
    infos: dict[int, _LeafInfo] = {}
    # Items: a node to visit at a path, or an entry ready to be written.
    stack: list[tuple[Agent[Any, Any, Any], str] | _Entry] = [(agent, agent.name)]
    while stack:
        item = stack.pop()
        if len(item) == 4:
            nodes.append(item)
            continue
        node, path = item
        if isinstance(node, Leaf):
            info = infos.get(id(node))
            if info is None:
                info = infos[id(node)] = _checked_info(node, path, converter)
            nodes.append((path, "leaf", node.name, info.version))
            continue
        nodes.append((path, node.kind, node.name, None))
        later: list[tuple[Agent[Any, Any, Any], str] | _Entry] = []
        if isinstance(node, _CHAIN_KINDS):
            for what, kid, seg in chain_parts(node):
                if what == "fallback":
                    later.append((path, "fallback", "fallback", None))
                if kid is None:
                    later.append((path, what, what, None))
                else:
                    later.append((kid, path + seg))
        else:
            kids = node.children()
            later.extend(zip(kids, (path + s for s in segments(kids)), strict=True))
        stack.extend(reversed(later))
    manifest = json.dumps({"format": FORMAT, "nodes": nodes}, separators=(",", ":"))
    return manifest, infos


# --------------------------------------------------------------------------
# The leaf layer


#: Canonical JSON: sorted keys, no spaces (built once: json.dumps with
#: options builds an encoder per call).
_CANONICAL: Final = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
_COMPACT: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
#: Types whose values are their own JSON (cattrs would return them as is).
_PLAIN: Final = frozenset({int, str, float, bool, type(None)})


def input_hash(converter: cattrs.Converter, x: object) -> str:
    """SHA-256 of the canonical JSON encoding of ``x`` (cattrs, sorted keys)."""
    data = x if type(x) in _PLAIN else converter.unstructure(x)
    return hashlib.sha256(_CANONICAL.encode(data).encode()).hexdigest()


def leaf_input_hash(converter: cattrs.Converter, x: object, store: str, path: str) -> str:
    """:func:`input_hash` for the leaf at ``path``; a ``TypeError`` naming it when ``x`` cannot be hashed.

    ``store`` (the journal, a cache) says what needed the hash.
    """
    try:
        return input_hash(converter, x)
    except Exception as exc:
        msg = f"{store}: cannot hash the input of leaf {path!r} ({type(x).__name__}): {safe_message(exc)}"
        raise TypeError(msg) from exc


def idempotency_key(run_id: str, path: str, digest: str) -> str:
    """The stable key of one leaf run: hash of run id, path and input hash."""
    return hashlib.sha256(f"{run_id}\0{path}\0{digest}".encode()).hexdigest()


def safe_repr(value: object, limit: int = 120) -> str:
    """``repr(value)`` cut to about ``limit`` characters, and never raising.

    Messages about values a user's leaf returned must not fail themselves:
    ``repr(10**5000)`` raises ``ValueError``, a 100,000-deep list raises
    ``RecursionError``, a user's ``__repr__`` may raise anything.
    """
    if type(value) is int and value.bit_length() > 256:
        return f"<int of {value.bit_length()} bits>"
    try:
        text = _REPR.repr(value)
    except Exception:
        return f"<{type(value).__name__} object>"
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


_REPR: Final = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxstring = 60
_REPR.maxother = 60
_REPR.maxlong = 60


def _encode(converter: cattrs.Converter, value: object, tp: Any, path: str, what: str) -> str:
    try:
        if type(value) in _PLAIN:
            data = value
        elif tp is Any or tp is object:
            data = converter.unstructure(value)
        else:
            data = converter.unstructure(value, unstructure_as=tp)
        text = _COMPACT.encode(data)
        if not text.isascii():
            # Every backend stores UTF-8 text: refuse what it cannot hold (a
            # lone surrogate) here, for this leaf alone, not in a batch.
            text.encode()
    except Exception as exc:
        msg = (
            f"journal: cannot store the {what} of leaf {path!r} "
            f"({type(value).__name__} {safe_repr(value)}): {safe_message(exc)}"
        )
        raise TypeError(msg) from exc
    return text


def safe_message(exc: BaseException) -> str:
    """``str(exc)`` bounded and never raising (for messages about an error)."""
    try:
        text = str(exc) or type(exc).__name__
    except Exception:
        text = type(exc).__name__
    return text if len(text) <= 300 else f"{text[:297]}..."


class JournalCorrupt(ValueError):
    """A stored record cannot be read back as its leaf declares it.

    Raised when a resumed run meets a record that was changed by hand or
    written by an incompatible version of the leaf; names the leaf and the
    run.  Start a new run id (or delete the run's records) to go on.

    >>> exc = JournalCorrupt("r1", "fetch", "not valid JSON")
    >>> exc.run_id, exc.path, isinstance(exc, ValueError)
    ('r1', 'fetch', True)
    >>> print(str(exc)[:64])
    journal run 'r1': the record of leaf 'fetch' cannot be read back
    """

    def __init__(self, run_id: str, path: str, detail: str) -> None:
        self.run_id = run_id
        self.path = path
        super().__init__(
            f"journal run {run_id!r}: the record of leaf {path!r} cannot be read back: {detail}; "
            f"the journal was changed outside combinators or by another version of the leaf: "
            f"use a new run_id"
        )


def _replay(converter: cattrs.Converter, record: _Record, info: _LeafInfo, path: str, run_id: str) -> Result[Any, Any]:
    if record.name != info.name or record.version != info.version:
        raise JournalMismatch(
            run_id,
            path,
            f"was recorded as {_describe('leaf', record.name, record.version)} "
            f"and is now {_describe('leaf', info.name, info.version)}",
        )
    try:
        value = _decode(converter, record.ok, record.payload, info)
    except Exception as exc:
        raise JournalCorrupt(run_id, path, safe_message(exc)) from exc
    return Success(value) if record.ok else Failure(value)


def _decode(converter: cattrs.Converter, ok: bool, payload: str, info: _LeafInfo) -> Any:
    """The value a record stands for, as its leaf declares it."""
    data = json.loads(payload)
    if ok:
        tp = info.out_type
    else:
        # Errors are stored with their class name, so a union of error
        # classes with similar fields structures to the right member, and a
        # subclass of a declared class to that subclass.
        if not isinstance(data, dict) or "type" not in data or "value" not in data:
            msg = f"a stored error is {{'type': ..., 'value': ...}}, got {safe_repr(data)}"
            raise TypeError(msg)
        name, data = data["type"], data["value"]
        tp = _error_class(info.err_type, name)
    if tp is Any or (type(data) in _NUMBERS and _widened(tp, type(data))):
        return data
    return converter.structure(data, tp)


#: JSON numbers (and booleans) as ``json.loads`` gives them.
_NUMBERS: Final = frozenset({bool, int, float})


def _widened(tp: Any, kind: type[Any]) -> bool:
    """Is a ``kind`` value one the declared ``tp`` takes as a narrower type?

    mypy lets a function declared ``-> float`` return an ``int`` and one
    declared ``-> int`` return a ``bool``.  JSON keeps the difference
    (``2`` and ``2.0``, ``true`` and ``1``), so the value comes back as it
    was given instead of being converted to the declared type.
    """
    members = get_args(tp) if get_origin(tp) in (Union, types.UnionType) else (tp,)
    return any((m is float and kind is not float) or (m is int and kind is bool) for m in members)


def _error_class(declared: Any, name: str) -> Any:
    """The declared error type (a member, or a subclass of one) called ``name``."""
    members = get_args(declared) if get_origin(declared) in (Union, types.UnionType) else (declared,)
    stack = list(members)
    while stack:
        member = stack.pop(0)
        cls = get_origin(member) or member
        if _type_name(cls) == name:
            return member
        if isinstance(cls, type) and cls is not type:
            stack.extend(cls.__subclasses__())
    return declared


def _not_restorable(path: str, ok: bool, info: _LeafInfo, value: object) -> TypeError:
    """The error for a value a replay would not give back as itself."""
    what = "output" if ok else "permanent error"
    declared = info.out_type if ok else info.err_type
    if declared is Any or declared is object:
        # Undeclared (or ``object``): the replay would be its plain JSON form.
        return TypeError(
            f"journal: leaf {path!r} has no declared {what} type and its {type(value).__name__} value "
            f"would not come back from JSON as itself; annotate the function's return type"
        )
    return TypeError(
        f"journal: the {what} of leaf {path!r} ({type(value).__name__} {safe_repr(value)}) would not come back "
        f"from the journal as itself (declared {safe_repr(declared)}); declare a type the converter "
        f"restores exactly (an int where float is declared, inside a container, comes back as a float)"
    )


def _comes_back(converter: cattrs.Converter, ok: bool, payload: str, info: _LeafInfo, value: object) -> bool:
    """Would a replay of ``payload`` give ``value`` back exactly (types too)?"""
    try:
        back = _decode(converter, ok, payload, info)
    except Exception:
        return False
    return same(value, back)


def same(a: object, b: object) -> bool:
    """Are ``a`` and ``b`` equal with the same types all the way down?

    ``==`` is not enough for a replay: ``True == 1`` and ``2 == 2.0``, and a
    list of them compares equal to the other list.  Containers, attrs
    classes, dataclasses and ``Result`` values are compared part by part
    (iteratively: depth is no limit); other values by type and ``==``
    (a class compared by identity is trusted to its converter).
    """
    stack: list[tuple[object, object]] = [(a, b)]
    while stack:
        x, y = stack.pop()
        if x is y:
            continue
        kind = type(x)
        if kind is not type(y):
            return False
        if kind is float:
            assert isinstance(x, float) and isinstance(y, float)
            if not (x == y or (math.isnan(x) and math.isnan(y))):
                return False
        elif kind in (list, tuple):
            assert isinstance(x, list | tuple) and isinstance(y, list | tuple)
            if len(x) != len(y):
                return False
            stack.extend(zip(x, y, strict=True))
        elif kind is dict:
            assert isinstance(x, dict) and isinstance(y, dict)
            if len(x) != len(y):
                return False
            stack.extend(zip(x.keys(), y.keys(), strict=True))
            stack.extend(zip(x.values(), y.values(), strict=True))
        elif kind in (set, frozenset):
            assert isinstance(x, set | frozenset) and isinstance(y, set | frozenset)
            if len(x) != len(y):
                return False
            theirs = {e: e for e in y}
            for e in x:
                if e not in theirs:
                    return False
                stack.append((e, theirs[e]))
        elif isinstance(x, Success | Failure):
            assert isinstance(y, Success | Failure)
            match x, y:
                case (Success(u), Success(v)) | (Failure(u), Failure(v)):
                    stack.append((u, v))
                case _:
                    return False
        elif attrs.has(kind):
            stack.extend((getattr(x, f.name), getattr(y, f.name)) for f in attrs.fields(kind) if f.eq)
        elif dataclasses.is_dataclass(x):
            stack.extend((getattr(x, f.name), getattr(y, f.name)) for f in dataclasses.fields(x) if f.compare)
        elif kind.__eq__ is object.__eq__:
            continue  # compared by identity: nothing to compare, trust the converter
        else:
            try:
                if not bool(x == y):
                    return False
            except Exception:
                continue  # no usable ==: trust the converter
    return True


def _report_replay(result: Result[Any, Any], path: str, kind: str) -> None:
    """Tell the run's observer about a leaf answered from the journal.

    It did not run again, but it did finish: it starts and ends at the same
    instant, so a report of a resumed run still lists every result.
    """
    attempt = ATTEMPT.get()
    emit(EventKind.STARTED, path, node=kind, attempt=attempt)
    if isinstance(result, Success):
        emit(EventKind.SUCCEEDED, path, node=kind, attempt=attempt, value=result._inner_value)
    else:
        emit(EventKind.FAILED, path, node=kind, attempt=attempt, error=result._inner_value)


def _type_name(tp: Any) -> str:
    return f"{getattr(tp, '__module__', '')}.{getattr(tp, '__qualname__', repr(tp))}"


def _stored(converter: cattrs.Converter, result: Result[Any, Any], info: _LeafInfo, path: str) -> tuple[bool, str] | None:
    """``(ok, payload)`` to record for ``result``, or ``None`` for a transient failure.

    Raises ``TypeError`` naming the leaf when the value cannot be stored, or
    would not come back from the journal as itself: refused now, for this
    leaf alone, not on every resume (JSON keys are strings, arrays are
    lists, an int inside a ``list[float]`` comes back a float).
    """
    match result:
        case Success(value):
            payload = _encode(converter, value, info.out_type, path, "output")
            ok = True
            if type(value) in _PLAIN and info.out_type in (Any, object, type(value)):
                return ok, payload  # plain JSON comes back as itself
        case Failure(value) if _is_permanent(value):
            data = _encode(converter, value, type(value), path, "permanent error")
            payload = f'{{"type":{_COMPACT.encode(_type_name(type(value)))},"value":{data}}}'
            ok = False
        case _:
            return None
    if not _comes_back(converter, ok, payload, info, value):
        raise _not_restorable(path, ok, info, value)
    return ok, payload


class JournalWriteError(RuntimeError):
    """The journal's database refused one leaf's record (or its claim to start).

    Names the run and the leaf; the other records of the same batch are
    kept (a failed batch is written again record by record).  The cause is
    the database's own error.

    >>> exc = JournalWriteError("r1", "fetch", "disk full")
    >>> exc.run_id, exc.path, str(exc)
    ('r1', 'fetch', "journal run 'r1': cannot record leaf 'fetch': disk full")
    """

    def __init__(self, run_id: str, path: str, detail: str, *, action: str = "record") -> None:
        self.run_id = run_id
        self.path = path
        super().__init__(f"journal run {run_id!r}: cannot {action} leaf {path!r}: {detail}")


def journal_layer(session: _Session, converter: cattrs.Converter, infos: dict[int, _LeafInfo]) -> LeafLayer:
    """The leaf layer that answers from, and records into, ``session``."""
    run_id = session.run_id

    def layer(c: Compiler, leaf: Leaf[Any, Any, Any], env: Env, runner: Runner) -> Runner:
        info = infos.get(id(leaf)) or _leaf_info(leaf)
        name, version = info.name, info.version
        observed, kind = c.observed, leaf.kind
        lifted = leaf.mode is LeafMode.LIFT

        async def run_journaled_leaf(x: Any, path: str) -> Result[Any, Any]:
            digest = leaf_input_hash(converter, x, "journal", path)
            key = (path, digest)
            try:
                got = await session.begin(key, name, version)
            except Exception as exc:
                raise JournalWriteError(run_id, path, safe_message(exc), action="start") from exc
            if isinstance(got, _Record):
                replayed = _replay(converter, got, info, path, run_id)
                if observed:
                    _report_replay(replayed, path, kind)
                return replayed
            token = _CURRENT.set(LeafContext(run_id, path, got, digest))
            try:
                result = await runner(x, path)
            except BaseException:
                session.release(key)
                raise
            finally:
                _CURRENT.reset(token)
            try:
                stored = _stored(converter, result, info, path)
            except Exception as exc:
                # The value cannot be recorded exactly: this leaf fails, alone
                # (a lift leaf with Crashed, as for anything it raises; other
                # leaves raise: their errors are typed and this is none).
                session.release(key)
                if lifted:
                    return Failure(Crashed(exc, path))
                raise
            except BaseException:
                session.release(key)
                raise
            if stored is None:
                session.release(key)
                return result
            ok, payload = stored
            try:
                other = await session.finish(key, name, version, ok, payload)
            except Exception as exc:
                raise JournalWriteError(run_id, path, safe_message(exc)) from exc
            if other is not None:
                return _replay(converter, other, info, path, run_id)
            return result

        return run_journaled_leaf

    return layer


async def run_journaled(
    agent: Agent[Any, Any, Any],
    x: object,
    *,
    journal: Journal,
    run_id: str | None,
    compile_tree: Callable[[tuple[LeafLayer, ...]], Runner],
) -> Result[Any, Any]:
    """Run ``agent`` under ``journal``: what ``run(journal=, run_id=)`` does."""
    if not isinstance(journal, Journal):
        msg = f"run(): journal must be a Journal (Journal.sqlite(path), ...), got {journal!r}"
        raise TypeError(msg)
    if not isinstance(run_id, str) or not run_id:
        msg = f"run(): a journaled run needs a run_id (a non-empty string) to resume by, got {run_id!r}"
        raise BuildError(msg)
    manifest, infos = plan_tree(agent, journal.converter)
    single: BaseException
    try:
        async with journal._session(run_id, manifest) as session:
            runner = compile_tree((journal_layer(session, journal.converter, infos),))
            return await runner(x, agent.name)
    except BaseExceptionGroup as group:
        # The session's nursery (the writer task) wraps what the run raised;
        # a bug in an agent must come out as itself (DESIGN §1).
        if len(group.exceptions) != 1:
            raise
        single = group.exceptions[0]
    raise single


__all__ = [
    "Journal",
    "JournalCorrupt",
    "JournalMismatch",
    "JournalRecord",
    "JournalWriteError",
    "LeafContext",
    "Permanent",
    "current_leaf",
    "versioned",
]
