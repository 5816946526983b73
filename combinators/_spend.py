"""Spend: what a leaf call may use (``.costs``), what it used (``charge``), budgets.

A :class:`Usage` counts calls, tokens and cost.  A leaf declares the most one
call may use with ``agent.costs(Usage(...))``; inside the call,
:func:`charge` reports what it really used.  A :class:`Budget` above a leaf
(``.budget(...)`` on a subtree, ``run(..., budget=...)``) reserves the
declared amount before the leaf starts, in every budget above it at once;
when the leaf ends, the reservation is replaced by what it charged (by what
it declared if it charged nothing).  A leaf that cannot reserve does not
start and fails with :class:`OverBudget`.

**Why the limit holds.**  Every budget keeps ``spent + reserved <= limit``:
a reservation is taken only when it fits, and settling replaces a
reservation by a charge no larger (when leaves charge at most what they
declare).  The checks and reservations of one leaf happen with no
``await`` between them, so in trio's single thread they are one atomic step.
Totals are kept exactly, a ``float`` cost taken as the decimal it is
written as (``0.1`` is one tenth: ten calls of ``0.1`` fit in ``1.0``), so
rounding can never let a sum creep over its limit or refuse one that fits.

**Unset fields.**  ``None`` means *not counted*: in an amount (a declaration
or a charge) it counts as zero; in a limit it means that field is unlimited.
So ``Budget(Usage(cost=5.0))`` limits only cost.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from fractions import Fraction
from typing import TYPE_CHECKING, Any, ClassVar, Final, Protocol, TypeVar

import attrs
import trio
from returns.result import Failure, Result

from ._exceptions import BuildError

if TYPE_CHECKING:
    from ._budget_postgres import PostgresBudget
    from ._expr import Agent, Leaf
    from ._plan import Compiler, Env
    from ._types import Runner

_OB_co = TypeVar("_OB_co", covariant=True)


class SpendLimit(Protocol[_OB_co]):
    """What ``run(..., budget=)`` takes (a ``Usage`` or a ``Budget``): typed by the error it adds.

    ``run``'s result gains ``OverBudget`` exactly when a budget is given
    (with none, the type variable is left unsolved: ``Never``).  A typing
    device, not something to implement: ``Usage`` and ``Budget`` are the two.

    >>> from combinators import pure, run_sync
    >>> limit: SpendLimit[OverBudget] = Usage(calls=3)
    >>> run_sync(pure(str).costs(Usage(calls=1)), 1, budget=limit)
    <Success: 1>
    """

    def _refusal(self) -> _OB_co: ...


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


# --------------------------------------------------------------------------
# Errors and events


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


@attrs.frozen
class Charge:
    """What one leaf call used (the value of a ``charged`` event).

    ``declared`` is what the leaf declared with ``.costs`` (``None``: no
    declaration); ``overspent`` names the fields where it used more.

    >>> from returns.result import Result, Success
    >>> from combinators import EventKind, Recorder, agent, run_sync
    >>> @agent
    ... async def ask(q: str) -> Result[str, str]:
    ...     charge(Usage(calls=1, cost=0.05))
    ...     return Success(q)
    >>> rec = Recorder()
    >>> _ = run_sync(ask.costs(Usage(calls=1, cost=0.02)), "hi", observer=rec)
    >>> [e.value.overspent for e in rec.events if e.kind is EventKind.CHARGED]
    [('cost',)]
    """

    used: Usage
    declared: Usage | None = None

    @property
    def overspent(self) -> tuple[str, ...]:
        """The fields where the call used more than it declared."""
        return self.used.exceeds(self.declared)


class _Meter:
    """What the leaf call running in this context has charged so far."""

    __slots__ = ("used",)

    def __init__(self) -> None:
        self.used: Usage | None = None


_METER: ContextVar[_Meter | None] = ContextVar("combinators_meter", default=None)


def charge(usage: Usage) -> None:
    """Report what the leaf call running now really used (adds up if called again).

    Counts in a leaf that declares ``.costs`` or runs under a budget; called
    anywhere else it does nothing (there is nothing to count against).  A
    call that never charges is taken to have used what it declared.

    >>> from returns.result import Result, Success
    >>> from combinators import agent, run_sync
    >>> @agent
    ... async def ask(q: str) -> Result[str, str]:
    ...     charge(Usage(calls=1, cost=0.01))
    ...     return Success(q.upper())
    >>> run_sync(ask.costs(Usage(calls=1, cost=0.02)), "hi", budget=Usage(cost=1.0))
    <Success: HI>
    """
    if not isinstance(usage, Usage):
        msg = f"charge() expects a Usage, got {type(usage).__name__} {usage!r}"
        raise TypeError(msg)
    meter = _METER.get()
    if meter is not None:
        meter.used = usage if meter.used is None else meter.used + usage


# --------------------------------------------------------------------------
# Budgets


class Budget:
    """A spend limit: reservations before each leaf call, charges after.

    ``.budget(Usage(...))`` on a subtree makes a fresh budget for each run;
    a ``Budget`` object made once and attached to many trees and runs
    (``.budget(hourly)``, ``run(..., budget=hourly)``) is shared by all of
    them in this process (one trio thread; see ``Budget.postgres`` for
    several processes).  ``spent``, ``reserved`` and ``remaining`` read its
    totals now.

    >>> from combinators import pure, run_sync
    >>> hourly = Budget(Usage(calls=2), name="hourly")
    >>> step = pure(str.upper).costs(Usage(calls=1)).budget(hourly)
    >>> [run_sync(step, "a"), run_sync(step, "b")]
    [<Success: A>, <Success: B>]
    >>> run_sync(step, "c").failure().budget, hourly.spent
    ('hourly', Usage(calls=2, input_tokens=None, output_tokens=None, cost=None))
    """

    #: Whether reservations go to a store shared with other processes (awaited).
    remote: ClassVar[bool] = False

    @staticmethod
    def postgres(dsn: str, limit: Usage, *, name: str, lease: float = 30.0) -> PostgresBudget:
        """A budget shared by every process that names it in the PostgreSQL database at ``dsn``.

        Each leaf call holds a reservation row with a ``lease`` (seconds)
        renewed while it runs; a killed process's reservations are released
        when their leases expire.  Give every process the same ``limit``.
        """
        from ._budget_postgres import PostgresBudget

        return PostgresBudget(dsn, limit, name=name, lease=lease)

    def __init__(self, limit: Usage, *, name: str = "budget") -> None:
        if not isinstance(limit, Usage):
            msg = f"Budget(): the limit must be a Usage, got {type(limit).__name__} {limit!r}"
            raise BuildError(msg)
        if not limit.set_fields():
            msg = f"Budget {name!r}: the limit {limit!r} sets no field; give at least one (Usage(cost=5.0))"
            raise BuildError(msg)
        if not isinstance(name, str) or not name:
            msg = f"Budget(): name must be a non-empty string, got {name!r}"
            raise BuildError(msg)
        self.limit = limit
        self.name = name
        self._index = tuple(i for i, v in enumerate(limit._values()) if v is not None)
        self._fields = tuple(FIELDS[i] for i in self._index)
        # Totals in exact units (see ``_units``): the limit, what finished
        # calls spent, and what is committed (spent + reserved).
        self._cap = tuple(_units(limit._values()[i], i) for i in self._index)
        self._spent: list[int | Fraction] = [0] * len(self._index)
        self._committed: list[int | Fraction] = [0] * len(self._index)

    def __repr__(self) -> str:
        return f"Budget({self.limit!r}, name={self.name!r})"

    # -- reading -------------------------------------------------------------

    @property
    def _reserved(self) -> list[int | Fraction]:
        return [m - s for m, s in zip(self._committed, self._spent, strict=True)]

    def _usage(self, values: list[int | Fraction]) -> Usage:
        by_index = dict(zip(self._index, values, strict=True))

        def count(i: int) -> int | None:
            v = by_index.get(i)
            return None if v is None else int(v)

        cost = by_index.get(3)
        return Usage(count(0), count(1), count(2), None if cost is None else float(Fraction(cost) / _COST_UNITS))

    @property
    def spent(self) -> Usage:
        """What finished calls used (the fields this budget limits)."""
        return self._usage(self._spent)

    @property
    def reserved(self) -> Usage:
        """What running calls have reserved."""
        return self._usage(self._reserved)

    @property
    def remaining(self) -> Usage:
        """What is left to reserve (never below zero)."""
        return self._usage([max(0, c - m) for c, m in zip(self._cap, self._committed, strict=True)])

    # -- accounting (synchronous: atomic in one trio thread) -----------------

    def vector(self, usage: Usage | None) -> tuple[int | Fraction, ...]:
        """``usage`` restricted to this budget's fields, in exact units (unset: zero)."""
        if usage is None:
            return (0,) * len(self._index)
        values = usage._values()
        return tuple(_units(values[i] or 0, i) for i in self._index)

    def fits(self, ask: tuple[int | Fraction, ...]) -> bool:
        """Would reserving ``ask`` keep ``spent + reserved`` within the limit?"""
        for c, m, a in zip(self._cap, self._committed, ask):
            if m + a > c:
                return False
        return True

    def take(self, ask: tuple[int | Fraction, ...]) -> None:
        """Reserve ``ask`` (checked with :meth:`fits` first, with no await between)."""
        committed = self._committed
        for i, a in enumerate(ask):
            committed[i] += a

    def settle(self, ask: tuple[int | Fraction, ...], used: tuple[int | Fraction, ...]) -> None:
        """Replace the reservation ``ask`` by the charge ``used``."""
        committed, spent = self._committed, self._spent
        for i, a in enumerate(ask):
            u = used[i]
            spent[i] += u
            if u != a:
                committed[i] += u - a

    def _refusal(self) -> OverBudget:
        """The error this budget adds (for typing ``run(budget=)``; see ``SpendLimit``)."""
        return self.refusal(None, "")

    def refusal(self, asked: Usage | None, path: str) -> OverBudget:
        """The error for a leaf at ``path`` whose ``asked`` did not fit."""
        return OverBudget(self.name, self.limit, self.spent, self.reserved, asked or Usage(), path)


# --------------------------------------------------------------------------
# Build-time checks


def declared_fields(tree: Agent[Any, Any, Any]) -> tuple[set[str], bool]:
    """The usage fields the leaves of ``tree`` declare, and whether some leaves are unknown (bind)."""
    from ._expr import Leaf

    fields: set[str] = set()
    unknown = False
    for node in tree.walk():
        if isinstance(node, Leaf) and node.spend is not None:
            fields.update(node.spend.set_fields())
        elif node.kind == "bind":
            unknown = True
    return fields, unknown


def check_budget(tree: Agent[Any, Any, Any], limit: Usage, where: str) -> None:
    """Refuse a budget that limits a field no leaf of ``tree`` declares."""
    declared, unknown = declared_fields(tree)
    if unknown:
        return  # leaves chosen at run time (bind) may declare it
    missing = [f for f in limit.set_fields() if f not in declared]
    if missing:
        msg = (
            f"{where}: the budget limits {', '.join(missing)}, which no leaf below declares; "
            f"declare it on the leaves with .costs(Usage({missing[0]}=...)) or drop it from the limit"
        )
        raise BuildError(msg)


# --------------------------------------------------------------------------
# The leaf wrapper


def metered_leaf(c: Compiler, leaf: Leaf[Any, Any, Any], env: Env, runner: Runner) -> Runner:
    """``runner`` with the leaf's usage reserved in ``env``'s budgets and metered.

    Reservation is all or nothing across the budgets, with no await between
    the checks and the reservations.  The reservation is settled whatever
    way the call ends (success, failure, exception, cancellation).
    """
    from ._observe import ATTEMPT, EventKind, emit

    declared: Usage | None = leaf.spend
    budgets: tuple[Budget, ...] = tuple(b for b in env.budgets if not b.remote)
    remotes: tuple[PostgresBudget, ...] = tuple(b for b in env.budgets if b.remote)  # type: ignore[misc]
    asks = tuple(b.vector(declared) for b in budgets)
    pairs = tuple(zip(budgets, asks, strict=True))
    observed = c.observed
    kind = leaf.kind
    if remotes:
        return _remote_metered(runner, declared, pairs, remotes, observed, kind)

    async def run_metered(x: Any, path: str) -> Result[Any, Any]:
        refused = _reserve(pairs, declared, path)
        if refused is not None:
            await trio.lowlevel.checkpoint()
            return Failure(refused)
        meter = _Meter()
        token = _METER.set(meter)
        try:
            return await runner(x, path)
        finally:
            _METER.reset(token)
            used = meter.used if meter.used is not None else declared
            for budget, ask in pairs:
                budget.settle(ask, budget.vector(used))
            if observed and used is not None:
                emit(EventKind.CHARGED, path, node=kind, attempt=ATTEMPT.get(), value=Charge(used, declared))

    return run_metered


def _reserve(
    pairs: tuple[tuple[Budget, tuple[int | Fraction, ...]], ...], declared: Usage | None, path: str
) -> OverBudget | None:
    """Reserve each budget's ask in every budget, all or nothing (no await in between).

    Gives the refusal of the first budget that cannot take its ask, having
    taken nothing; None once every budget holds its reservation.
    """
    for budget, ask in pairs:
        if not budget.fits(ask):
            return budget.refusal(declared, path)
    for budget, ask in pairs:
        budget.take(ask)
    return None


def budgeted_agent_leaf(leaf: Leaf[Any, Any, Any], env: Env) -> Runner:
    """An unobserved ``agent`` leaf under budgets (and at most one limiter), in one coroutine.

    The budgeted fan-out's hot path: slot, reservation, meter, call,
    settlement and release without the general path's three coroutines.
    Same order and rules as ``metered_leaf`` inside ``_limited``.
    """
    from ._notes import not_a_result, note_node

    fn = leaf.fn
    name = leaf.name
    declared: Usage | None = leaf.spend
    pairs = tuple((b, b.vector(declared)) for b in env.budgets)
    limiter = env.limiters[0] if env.limiters else None
    priority = env.priority

    async def run_budgeted_agent(x: Any, path: str) -> Result[Any, Any]:
        if limiter is not None:
            await limiter.acquire(priority)
        try:
            refused = _reserve(pairs, declared, path)
            if refused is not None:
                await trio.lowlevel.checkpoint()
                return Failure(refused)
            meter = _Meter()
            token = _METER.set(meter)
            try:
                result = await fn(x)
            except Exception as exc:
                note_node(exc, path)
                raise
            finally:
                _METER.reset(token)
                used = meter.used
                for budget, ask in pairs:
                    budget.settle(ask, ask if used is None else budget.vector(used))
        finally:
            if limiter is not None:
                limiter.release()
        if not isinstance(result, Result):
            raise not_a_result(name, path, result)
        return result

    return run_budgeted_agent


def _remote_metered(
    runner: Runner,
    declared: Usage | None,
    pairs: tuple[tuple[Budget, tuple[int | Fraction, ...]], ...],
    remotes: tuple[PostgresBudget, ...],
    observed: bool,
    kind: str,
) -> Runner:
    """``metered_leaf`` with budgets in a shared store: reservations there are awaited.

    The in-process budgets are reserved first (atomically, as always), then
    each shared one in turn; a refusal anywhere gives back what was taken.
    While the leaf runs, a task renews its shared reservations' leases.
    """
    from ._cancel import open_nursery
    from ._observe import ATTEMPT, EventKind, emit

    async def give_back(held: list[tuple[PostgresBudget, str]], used: Usage | None) -> None:
        for budget, rid in held:
            await budget.settle_remote(rid, used)

    async def run_remote_metered(x: Any, path: str) -> Result[Any, Any]:
        refused = _reserve(pairs, declared, path)
        if refused is not None:
            await trio.lowlevel.checkpoint()
            return Failure(refused)
        held: list[tuple[PostgresBudget, str]] = []
        meter = _Meter()
        started = False
        try:
            for remote in remotes:
                got = await remote.reserve(declared, path)
                if isinstance(got, OverBudget):
                    return Failure(got)
                held.append((remote, got))
            started = True
            token = _METER.set(meter)
            try:
                async with open_nursery() as nursery:
                    for remote, rid in held:
                        nursery.start_soon(remote.keep_alive, rid)
                    try:
                        return await runner(x, path)
                    finally:
                        nursery.cancel_scope.cancel()
            finally:
                _METER.reset(token)
        finally:
            used = (meter.used if meter.used is not None else declared) if started else None
            for budget, ask in pairs:
                budget.settle(ask, budget.vector(used))
            await give_back(held, used)
            if observed and used is not None:
                emit(EventKind.CHARGED, path, node=kind, attempt=ATTEMPT.get(), value=Charge(used, declared))

    return run_remote_metered


def budget_of(limit: Usage | Budget, name: str) -> Budget:
    """The budget a ``.budget()`` node or ``run(budget=)`` stands for in one run."""
    return limit if isinstance(limit, Budget) else Budget(limit, name=name)


def total(charges: Iterator[Charge]) -> Usage:
    """The sum of ``charges``' usage (added exactly: :func:`sum_usage`)."""
    return sum_usage(ch.used for ch in charges) or Usage()


__all__ = ["Budget", "Charge", "OverBudget", "Usage", "charge"]
