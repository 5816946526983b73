"""Every error the library produces, in one place: values that flow, and exceptions.

Two channels (STYLE.md, "Errors"):

* **Error values** are what agents fail with: they travel as ``Failure(e)``
  and are part of an agent's type.  The ones the library itself produces::

      TimedOut        .timeout() ran out of trio time
      Crashed         a lift() function raised; the exception is kept
      AllFailed       first_success(), average_confidence(): every operand failed
      NoMajority      vote(): no strict majority
      GaveUp          repeat(): the bound was reached
      NoBranch        switch(): no branch for the key and no default
      OverBudget      .budget()/run(budget=): a leaf's declared Usage did not fit
      WorkflowFailed  a workflow where some node did not succeed; each node's
                      outcome is one of
                        NodeSucceeded  ran and succeeded (its value)
                        NodeFailed     ran and failed (its error value)
                        NodeSkipped    never ran: a dependency did not succeed
                        NodeCancelled  the workflow was cancelled first

* **Exceptions** are raised, never turned into values.  Misuse raises at
  build time (or at the start of a run) with the closest built-in::

      TypeError
       └── AgentTypeError      a non-callable, a sync function given to agent()
      ValueError
       ├── BuildError          bad argument (limit(0), empty name, ...)
       │    ├── CycleError     a workflow whose dependencies loop
       │    └── JournalMismatch  a run id resumed with another tree
       └── JournalCorrupt      a stored record cannot be read back
      RuntimeError
       └── JournalWriteError   the journal's database refused a record
      Exception
       ├── RemoteError         stands in for a worker's exception that did not pickle
       └── ForeignException    an exception rebuilt from JSON whose class is not here

``Usage`` lives here too, with the ``OverBudget`` that carries it: Usage's
checks raise ``BuildError`` and its ``_refusal`` names ``OverBudget``, so
the three refer to each other and one module keeps the layers acyclic
(docs/architecture.md).  Modules that defined these names before re-export
them, so an exception stored under its old module (``Crashed`` in the
journal keeps module and qualified name) still loads.
"""

from __future__ import annotations

import functools
from collections.abc import Hashable, Iterable
from fractions import Fraction
from typing import Any, Final, Generic, TypeAlias, TypeVar, final

import attrs

from ._handles import Node, _key_name

_E_co = TypeVar("_E_co", covariant=True)
_S_co = TypeVar("_S_co", covariant=True)
_T_co = TypeVar("_T_co", covariant=True)
_E = TypeVar("_E")
_T = TypeVar("_T")


@attrs.frozen
class TimedOut:
    """The subtree at ``path`` did not finish within ``seconds`` of trio time.

    >>> from combinators.testing import fake, run_virtual
    >>> result, _ = run_virtual(fake("slow", delay=9).timeout(1).named("ask"), None)
    >>> result.failure()
    TimedOut(path='ask', seconds=1.0)
    """

    path: str
    seconds: float


@attrs.frozen(eq=False)
class Crashed:
    """A ``lift`` function raised ``exception`` at node ``path``.

    Two ``Crashed`` are equal when their paths, exception types and messages
    are: exceptions themselves compare by identity, which is rarely useful.

    >>> from combinators import lift, run_sync
    >>> crashed = run_sync(lift(int).named("parse"), "x").failure()
    >>> crashed.path, type(crashed.exception).__name__
    ('parse', 'ValueError')
    >>> crashed == Crashed(ValueError("invalid literal for int() with base 10: 'x'"), "parse")
    True
    """

    exception: Exception
    path: str = ""

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Crashed):
            return NotImplemented
        return (
            self.path == other.path
            and type(self.exception) is type(other.exception)
            and self.exception.args == other.exception.args
        )

    def __hash__(self) -> int:
        return hash((self.path, type(self.exception).__name__, str(self.exception)))


@attrs.frozen
class AllFailed(Generic[_E_co]):
    """Every operand of a ``first_success`` failed; errors in operand order.

    >>> from combinators import fail, first_success, run_sync
    >>> run_sync(first_success(fail("a down"), fail("b down")), None)
    <Failure: AllFailed(errors=('a down', 'b down'))>
    """

    errors: tuple[_E_co, ...]


@attrs.frozen
class NoMajority:
    """A ``vote`` where no value won a strict majority.

    ``candidates`` lists each distinct (key of a) success value with its count,
    most votes first; ``failures`` counts the operands that failed.

    >>> from combinators import fail, succeed, run_sync, vote
    >>> run_sync(vote(succeed("yes"), succeed("no"), fail("?")), None).failure()
    NoMajority(candidates=(('yes', 1), ('no', 1)), failures=1)
    """

    candidates: tuple[tuple[Any, int], ...]
    failures: int = 0


@attrs.frozen
class GaveUp(Generic[_S_co]):
    """A ``repeat`` ran ``rounds`` rounds without its condition holding.

    >>> from combinators import pure, repeat, run_sync
    >>> run_sync(repeat(pure(lambda n: n + 1), until=lambda n: n > 100, max_times=3), 0)
    <Failure: GaveUp(last_state=3, rounds=3)>
    """

    last_state: _S_co
    rounds: int


class AgentTypeError(TypeError):
    """Something that is not an agent (or the wrong kind of function) was given.

    A ``TypeError``, raised when the tree is built.

    >>> from combinators import agent
    >>> try:
    ...     agent(len)
    ... except AgentTypeError as exc:
    ...     print(str(exc)[:40])
    agent() expects an `async def` returning
    """


class BuildError(ValueError):
    """A tree or workflow was built with an argument it cannot run with.

    A ``ValueError``, raised when the tree is built; the message names the
    node and the fix.

    >>> from combinators import pure
    >>> try:
    ...     pure(str).limit(0)
    ... except BuildError as exc:
    ...     print(type(exc).__name__, isinstance(exc, ValueError))
    BuildError True
    """


class CycleError(BuildError):
    """A workflow's dependencies form a cycle; ``cycle`` lists it in order.

    >>> from combinators import Workflow, pure
    >>> wf, a = Workflow.start(int).add("a", pure(str))
    >>> wf, b = wf.add("b", pure(len), after=a)
    >>> try:
    ...     wf.depend("a", on="b").build()
    ... except CycleError as exc:
    ...     print(exc.cycle)
    ('a', 'b', 'a')
    """

    def __init__(self, cycle: tuple[Hashable, ...]) -> None:
        self.cycle = cycle
        text = " -> ".join(str(n) for n in cycle)
        super().__init__(f"workflow has a dependency cycle: {text}")


@attrs.frozen
class NoBranch:
    """A ``switch`` at ``path`` got a key with no branch and had no default.

    >>> from combinators import pure, run_sync, switch
    >>> route = switch(len, {1: pure(str.upper)}).named("route")
    >>> run_sync(route, "abc")
    <Failure: NoBranch(key=3, path='route')>
    """

    key: Any
    path: str


# --------------------------------------------------------------------------
# A workflow's outcomes


@final
@attrs.frozen
class NodeSucceeded(Generic[_T_co]):
    """The node ran and succeeded with ``value``.

    >>> from combinators import Workflow, fail, pure, run_sync
    >>> wf, ok = Workflow.start(int).add("ok", pure(str))
    >>> wf, bad = wf.add("bad", fail("down"))
    >>> run_sync(wf.build(), 7).failure().outcome(ok)
    NodeSucceeded(value='7')
"""

    value: _T_co


@final
@attrs.frozen
class NodeFailed(Generic[_E_co]):
    """The node ran and failed with the error value ``error``.

    >>> from combinators import Workflow, fail, run_sync
    >>> wf, bad = Workflow.start(int).add("bad", fail("down"))
    >>> run_sync(wf.build(), 7).failure().outcome(bad)
    NodeFailed(error='down')
"""

    error: _E_co


@final
@attrs.frozen
class NodeSkipped:
    """The node never ran: its dependency ``because`` did not succeed.

    ``because`` is the direct dependency whose failure (or skip) reached this
    node first; follow the chain of ``because`` to find the failed node.

    >>> from combinators import Workflow, fail, pure, run_sync
    >>> wf, bad = Workflow.start(int).add("bad", fail("down"))
    >>> wf, after = wf.add("after", pure(str), after=bad)
    >>> run_sync(wf.build(), 7).failure().outcome(after)
    NodeSkipped(because='bad')
"""

    because: str


@final
@attrs.frozen
class NodeCancelled:
    """The workflow was cancelled (``on_failure="cancel"``) before this node finished.

    ``started`` tells whether it was running (True) or still waiting for its
    dependencies (False).

    >>> from combinators import Workflow, fail
    >>> from combinators.testing import fake, run_virtual
    >>> wf, bad = Workflow.start(int).add("bad", fail("down"))
    >>> wf, slow = wf.add("slow", fake("slow", delay=5))
    >>> result, elapsed = run_virtual(wf.build(on_failure="cancel"), 7)
    >>> result.failure().outcome(slow), elapsed
    (NodeCancelled(started=True), 0.0)
"""

    started: bool


NodeOutcome: TypeAlias = NodeSucceeded[object] | NodeFailed[_E] | NodeSkipped | NodeCancelled


@final
@attrs.frozen
class WorkflowFailed(Generic[_E_co]):
    """A workflow where some node did not succeed: every node's outcome, nothing lost.

    ``outcomes`` holds, for each node in the order added, a
    :class:`NodeSucceeded`, :class:`NodeFailed`, :class:`NodeSkipped` or
    :class:`NodeCancelled`.  ``first`` names the node whose failure came
    first in trio time.

    >>> from combinators import Workflow, fail, pure, run_sync
    >>> wf, ok = Workflow.start(int).add("ok", pure(str))
    >>> wf, bad = wf.add("bad", fail("down"))
    >>> failed = run_sync(wf.build(), 7).failure()
    >>> failed.first, failed.errors, failed.value(ok)
    ('bad', {'bad': 'down'}, '7')
"""

    items: tuple[tuple[str, NodeOutcome[_E_co]], ...]
    first: str
    _index: dict[str, int] = attrs.field(init=False, eq=False, hash=False, repr=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_index", {name: i for i, (name, _) in enumerate(self.items)})

    @property
    def outcomes(self) -> dict[str, NodeOutcome[_E_co]]:
        """``{name: outcome}`` for every node."""
        return dict(self.items)

    @property
    def errors(self) -> dict[str, _E_co]:
        """``{name: error}`` for the nodes that failed."""
        return {name: o.error for name, o in self.items if isinstance(o, NodeFailed)}

    @property
    def error(self) -> _E_co:
        """The error of the node that failed first."""
        outcome = self.outcome(self.first)
        assert isinstance(outcome, NodeFailed)
        return outcome.error

    def outcome(self, key: Node[Any] | str) -> NodeOutcome[_E_co]:
        """The outcome of one node."""
        name = _key_name(key, "WorkflowFailed.outcome()")
        i = self._index.get(name)
        if i is None:
            msg = f"workflow has no node {name!r}"
            raise KeyError(msg)
        return self.items[i][1]

    def value(self, key: Node[_T]) -> _T:
        """The output of a node that succeeded; ``LookupError`` if it did not."""
        outcome = self.outcome(key)
        if not isinstance(outcome, NodeSucceeded):
            msg = f"workflow node {key.name!r} did not succeed: {outcome!r}"
            raise LookupError(msg)
        return outcome.value  # type: ignore[return-value]  # the handle carries the type

    def __str__(self) -> str:
        bad = [f"{name}: {o!r}" for name, o in self.items if not isinstance(o, NodeSucceeded)]
        return f"workflow failed (first: {self.first!r}); " + ", ".join(bad)


# --------------------------------------------------------------------------
# Spend: the amounts an OverBudget reports.  Usage lives here, with the
# error that carries it: Usage's checks raise BuildError and its
# ``_refusal`` names OverBudget, so the three refer to each other.


#: The fields of a :class:`Usage`, in order.
FIELDS: Final = ("calls", "input_tokens", "output_tokens", "cost")


def _count(name: str) -> Any:
    def check(inst: object, attribute: object, value: object) -> None:
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            msg = f"Usage: {name} must be an int >= 0 or None, got {value!r}"
            raise BuildError(msg)

    return check


def _to_cost(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0 or value == float("inf"):
        msg = f"Usage: cost must be a finite number >= 0 or None, got {value!r}"
        raise BuildError(msg)
    return float(value)


@attrs.frozen
class Usage:
    """Calls, tokens and cost (in the user's own unit) used or allowed.

    ``None`` means the field is not counted: zero in an amount, unlimited in
    a limit.  Usages add field by field (``None + None`` stays ``None``), and
    ``a.fits(limit)`` compares them field by field (``a <= limit`` too).

    >>> a = Usage(calls=1, cost=0.25) + Usage(calls=1, input_tokens=300, cost=0.5)
    >>> a
    Usage(calls=2, input_tokens=300, output_tokens=None, cost=0.75)
    >>> a.fits(Usage(cost=1.0)), a <= Usage(calls=1)
    (True, False)
    """

    calls: int | None = attrs.field(default=None, validator=_count("calls"))
    input_tokens: int | None = attrs.field(default=None, validator=_count("input_tokens"))
    output_tokens: int | None = attrs.field(default=None, validator=_count("output_tokens"))
    cost: float | None = attrs.field(default=None, converter=_to_cost)

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(*(_add(a, b) for a, b in zip(self._values(), other._values(), strict=True)))

    def scaled(self, n: int) -> Usage:
        """This usage ``n`` times over (``n`` calls of one leaf)."""
        return Usage(*(None if v is None else v * n for v in self._values()))

    def fits(self, limit: Usage) -> bool:
        """Is every field that ``limit`` sets at most its limit here (unset here: zero)?"""
        return all(
            lim is None or _exact(v or 0) <= _exact(lim)
            for v, lim in zip(self._values(), limit._values(), strict=True)
        )

    def __le__(self, other: Usage) -> bool:
        if not isinstance(other, Usage):
            return NotImplemented
        return self.fits(other)

    def exceeds(self, declared: Usage | None) -> tuple[str, ...]:
        """The fields where this amount is more than ``declared`` (unset: zero)."""
        base = declared._values() if declared is not None else (None,) * len(FIELDS)
        return tuple(
            f
            for f, v, d in zip(FIELDS, self._values(), base, strict=True)
            if _exact(v or 0) > _exact(d or 0)
        )

    def set_fields(self) -> tuple[str, ...]:
        """The names of the fields that are not ``None``."""
        return tuple(f for f, v in zip(FIELDS, self._values(), strict=True) if v is not None)

    def _values(self) -> tuple[Any, ...]:
        return (self.calls, self.input_tokens, self.output_tokens, self.cost)

    def _refusal(self) -> OverBudget:
        """The error a budget of this limit adds (for typing ``run(budget=)``; see ``SpendLimit``)."""
        return OverBudget("budget", self, Usage(), Usage(), Usage())


def _add(a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    if isinstance(a, float) or isinstance(b, float):
        return float(_exact(a) + _exact(b))
    return a + b


def sum_usage(usages: Iterable[Usage]) -> Usage | None:
    """The sum of ``usages`` added exactly, field by field, and rounded once (None for none).

    ``a + b + c`` rounds a float cost at every step, so a long run's total
    could drift from what ``estimate`` (which adds exactly) says; reports
    and totals add this way.
    """
    sums: list[Any] = [None] * len(FIELDS)
    floats = [False] * len(FIELDS)
    seen = False
    for usage in usages:
        seen = True
        for i, v in enumerate(usage._values()):
            if v is None:
                continue
            floats[i] = floats[i] or isinstance(v, float)
            sums[i] = _exact(v) if sums[i] is None else sums[i] + _exact(v)
    if not seen:
        return None
    values: list[Any] = [float(v) if is_float and v is not None else v for v, is_float in zip(sums, floats, strict=True)]
    return Usage(*values)


def _exact(v: int | float) -> int | Fraction:
    return v if type(v) is int else _decimal(v)


#: Costs are counted in units of 10**-12 inside budgets: integers (fast,
#: exact) for costs with up to 12 decimals, a ``Fraction`` of units beyond.
_COST_UNITS: Final = 10**12


def _units(v: int | float, index: int) -> int | Fraction:
    """An amount of field ``index`` in a budget's exact units."""
    if index != 3:
        return int(v)
    return _cost_units(float(v))


@functools.lru_cache(maxsize=4096)
def _cost_units(v: float) -> int | Fraction:
    q = _decimal(v) * _COST_UNITS
    return q.numerator if q.denominator == 1 else q


@functools.lru_cache(maxsize=4096)
def _decimal(v: float) -> Fraction:
    """The exact number ``v`` was written as (``0.1`` is one tenth), not its binary neighbour."""
    return Fraction(repr(v))


@attrs.frozen
class OverBudget:
    """A leaf did not start: its declared usage did not fit in ``budget``.

    ``spent`` is what the budget's finished calls used, ``reserved`` what the
    calls running now may still use, ``asked`` what this leaf declared; the
    leaf at ``path`` would have put some field of ``spent + reserved +
    asked`` over ``limit``.

    >>> from combinators import Usage, pure, run_sync
    >>> step = pure(str.upper).costs(Usage(calls=1)).named("step")
    >>> refused = run_sync((step >> step).budget(Usage(calls=1)).named("two"), "a").failure()
    >>> refused.path, refused.spent.calls, refused.asked.calls
    ('two/seq/step[1]', 1, 1)
"""

    budget: str
    limit: Usage
    spent: Usage
    reserved: Usage
    asked: Usage
    path: str = ""


# --------------------------------------------------------------------------
# Journal, executors, JSON


class JournalMismatch(BuildError):
    """The tree given for a run id is not the tree the journal recorded.

    ``path`` names the first node that differs (in the order ``walk()``
    visits nodes).  Start a new run id, or restore the tree, to go on.

    >>> from combinators import Journal, pure, run_sync
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


class RemoteError(Exception):
    """Stands in for an exception raised in a worker that could not be pickled back.

    ``type_name`` is the qualified name of the original class; the message is
    its ``str``; the remote traceback is kept as for any remote exception.

    >>> err = RemoteError("shop.Unpicklable", "lock held")
    >>> str(err), isinstance(err, Exception)
    ('shop.Unpicklable: lock held', True)
    """

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(type_name, message)
        self.type_name = type_name
        self.message = message

    def __str__(self) -> str:
        return f"{self.type_name}: {self.message}"


class ForeignException(Exception):
    """An exception rebuilt from JSON whose class is not available here.

    ``type_name`` and ``module`` name the original class; ``args`` are
    the original arguments (or its message).

    >>> from combinators import Crashed, json_converter as converter
    >>> data = converter.unstructure(Crashed(ValueError("bad"), "parse"))
    >>> data["exception"], data["module"] = "GoneError", "elsewhere"  # a class this process lacks
    >>> exc = converter.structure(data, Crashed).exception
    >>> isinstance(exc, ForeignException), str(exc)
    (True, 'GoneError: bad')
"""

    def __init__(self, type_name: str, module: str, *args: object) -> None:
        super().__init__(*args)
        self.type_name = type_name
        self.module = module

    def __str__(self) -> str:
        return f"{self.type_name}: {super().__str__()}"
