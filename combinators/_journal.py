"""Durable runs: a journal of leaf results that lets a crashed run resume.

Only leaves are journaled; combinators are re-evaluated on resume.  Each
leaf run is keyed by ``(run id, node path, input hash)`` where the input
hash is the SHA-256 of the leaf's input encoded canonically (cattrs
unstructure, then JSON with sorted keys).  A leaf's success is committed
before anything downstream sees it; on resume a recorded leaf is answered
from the journal without calling its function.

The pieces (the first three in ``_journal_store``, the backends' interface;
the leaf layer, hashing and replay here):

* :class:`Journal` — the public handle: ``Journal.sqlite(path)`` (embedded,
  one process at a time), ``Journal.postgres(dsn)`` (several processes, with
  leases), ``Journal.memory()`` (tests).
* a *session* per run (``Session``): ``begin`` a leaf (its recorded
  outcome, or the attempt number it may run as), ``finish`` it (commit),
  ``release`` it (give up a claim after a failure or a cancel).
* :class:`Batcher` — group commit: one writer task drains every queued
  operation into one transaction, so leaves finishing together share an
  fsync.
* :meth:`Journal._open_run` — what ``run(..., journal=, run_id=)`` calls
  (the interpreter's ``Journal`` protocol): checks the tree (encodable
  outputs, same shape as the recorded run), opens a session and gives the
  journal's leaf layer, which ``run`` compiles the tree with.
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
from ._exceptions import JournalCorrupt as JournalCorrupt
from ._exceptions import JournalMismatch as JournalMismatch
from ._exceptions import JournalWriteError as JournalWriteError
from ._expr import Agent, Leaf, LeafMode
from ._check import _fn_name
from ._observe import ATTEMPT, EventKind, emit
from ._plan import Compiler, Env, LeafLayer, segments
from ._types import Runner


_A = TypeVar("_A", bound=Agent[Any, Any, Any])

#: Bumped when the stored encoding changes; part of every manifest.
FORMAT: Final = 2


# --------------------------------------------------------------------------
# Public values


@attrs.frozen
class LeafContext:
    """What a journaled leaf knows about its own run (see :func:`current_leaf`).

    ``attempt`` counts every start of this leaf at this position with this
    input, across retries and resumed runs (1 the first time).
    ``idempotency_key`` is the same for every attempt, so an external
    service can deduplicate the side effects of an at-least-once leaf;
    ``input_hash`` is the SHA-256 of the leaf's canonical input.

    >>> from returns.result import Result, Success
    >>> from combinators import Journal, agent, run_sync
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
    >>> from combinators import Journal, agent, run_sync
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
    >>> from combinators import Journal, pure, run_sync
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
class Record:
    """A finished leaf as stored: ``payload`` is the JSON of the value/error."""

    name: str
    version: str | None
    ok: bool
    payload: str


#: (node path, input hash): the key of a leaf run inside one run id.
Key = tuple[str, str]


class Session(Protocol):
    """One run's connection to a journal."""

    run_id: str

    async def begin(self, key: Key, name: str, version: str | None) -> Record | int:
        """The recorded outcome of ``key``, or the attempt number to run it as."""
        ...

    async def finish(self, key: Key, name: str, version: str | None, ok: bool, payload: str) -> Record | None:
        """Commit an outcome; ``None`` once durable, or another owner's record."""
        ...

    def release(self, key: Key) -> None:
        """Give up the claim on ``key`` without recording anything (no wait)."""
        ...


# --------------------------------------------------------------------------
# The public handle


def converter_or_shared(converter: cattrs.Converter | None) -> cattrs.Converter:
    if converter is not None:
        return converter
    from ._json import converter as shared

    return shared


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


def _replay(converter: cattrs.Converter, record: Record, info: _LeafInfo, path: str, run_id: str) -> Result[Any, Any]:
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


def journal_layer(session: Session, converter: cattrs.Converter, infos: dict[int, _LeafInfo]) -> LeafLayer:
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
            if isinstance(got, Record):
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


def _describe(kind: str, name: str, version: str | None) -> str:
    text = f"{kind} {name!r}"
    return text if version is None else f"{text} version {version!r}"


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
