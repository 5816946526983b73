"""Budgets in this process, and what a leaf reports it used (``charge``).

The values a tree holds and a run is given: :class:`Budget` (a spend
limit with its totals), :class:`SpendLimit` (what ``run(budget=)`` takes,
typed by the error it adds), :class:`Charge` and :func:`charge`.  How a
leaf call reserves, meters and settles is the interpreter's (``_spend``);
a budget kept in a store shared by processes implements
:class:`RemoteBudget` (``Budget.postgres``, in ``_budget_postgres``).
See ``_spend`` for the accounting rules.
"""

from __future__ import annotations

import abc
from contextvars import ContextVar
from fractions import Fraction
from typing import ClassVar, Final, Protocol, TypeVar

import attrs

from ._backends import Backends
from ._exceptions import _COST_UNITS, FIELDS, BuildError, OverBudget, Usage, _units


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
    def postgres(dsn: str, limit: Usage, *, name: str, lease: float = 30.0) -> RemoteBudget:
        """A budget shared by every process that names it in the PostgreSQL database at ``dsn``.

        Each leaf call holds a reservation row with a ``lease`` (seconds)
        renewed while it runs; a killed process's reservations are released
        when their leases expire.  Give every process the same ``limit``.
        """
        return BACKENDS.make("postgres", dsn, limit, name=name, lease=lease)

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


class RemoteBudget(Budget, abc.ABC):
    """A budget kept in a store shared with other processes: its reservations are awaited.

    The interpreter reserves with :meth:`reserve` before a leaf starts,
    keeps the reservation alive with :meth:`keep_alive` while it runs and
    settles it with :meth:`settle_remote`.
    """

    remote: ClassVar[bool] = True

    @abc.abstractmethod
    async def reserve(self, asked: Usage | None, path: str) -> str | OverBudget:
        """Reserve ``asked`` for the leaf at ``path``: a reservation id, or the refusal."""

    @abc.abstractmethod
    async def settle_remote(self, rid: str, used: Usage | None) -> None:
        """Replace reservation ``rid`` by the charge ``used`` (``None``: nothing)."""

    @abc.abstractmethod
    async def keep_alive(self, rid: str) -> None:
        """Renew reservation ``rid``'s lease until cancelled."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close the connections this budget holds."""


#: The shared budget backends (``Budget.postgres``), registered in ``_plugins``.
BACKENDS: Final[Backends[RemoteBudget]] = Backends("Budget")
