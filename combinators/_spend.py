"""Spend: what a leaf call may use (``.costs``), what it used (``charge``), budgets.

This module is the interpreter's part: the leaf wrappers that reserve,
meter and settle.  The values live below the tree: :class:`Usage` and
:class:`OverBudget` in ``_exceptions``, :class:`Budget`, :class:`Charge`
and :func:`charge` in ``_budget``.

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

from collections.abc import Iterator
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import trio
from returns.result import Failure, Result

from ._budget import _METER, RemoteBudget, _Meter
from ._budget import Budget as Budget
from ._budget import Charge as Charge
from ._budget import SpendLimit as SpendLimit
from ._budget import charge as charge
from ._exceptions import FIELDS as FIELDS
from ._exceptions import OverBudget as OverBudget
from ._exceptions import Usage as Usage
from ._exceptions import sum_usage as sum_usage
from ._expr import check_budget as check_budget

if TYPE_CHECKING:
    from ._expr import Leaf
    from ._plan import Compiler, Env
    from ._types import Runner


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
    remotes: tuple[RemoteBudget, ...] = tuple(b for b in env.budgets if b.remote)  # type: ignore[misc]
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
    remotes: tuple[RemoteBudget, ...],
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

    async def give_back(held: list[tuple[RemoteBudget, str]], used: Usage | None) -> None:
        for budget, rid in held:
            await budget.settle_remote(rid, used)

    async def run_remote_metered(x: Any, path: str) -> Result[Any, Any]:
        refused = _reserve(pairs, declared, path)
        if refused is not None:
            await trio.lowlevel.checkpoint()
            return Failure(refused)
        held: list[tuple[RemoteBudget, str]] = []
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
