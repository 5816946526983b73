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

from ._exceptions import _COST_UNITS, BuildError, _exact, _units
from ._exceptions import FIELDS as FIELDS
from ._exceptions import OverBudget as OverBudget
from ._exceptions import Usage as Usage
from ._exceptions import sum_usage as sum_usage

if TYPE_CHECKING:
    from ._budget_postgres import PostgresBudget
    from ._expr import Agent, Leaf
    from ._plan import Compiler, Env
    from ._types import Runner

_OB_co = TypeVar("_OB_co", covariant=True)


class SpendLimit(Protocol[_OB_co]):
    """What ``run(..., budget=)`` takes (a ``Usage`` or a ``Budget``): typed by the error it adds.

    ``run``'s result gains ``OverBudget`` exactly when a budget is given
    (with none, the type variable is left unsolved: ``Never``).
    """

    def _refusal(self) -> _OB_co: ...


# --------------------------------------------------------------------------
# Errors and events


@attrs.frozen
class Charge:
    """What one leaf call used (the value of a ``charged`` event).

    ``declared`` is what the leaf declared with ``.costs`` (``None``: no
    declaration); ``overspent`` names the fields where it used more.
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
