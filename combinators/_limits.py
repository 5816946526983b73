"""Admission control on trio primitives: a priority limiter and a start-rate window.

:class:`PriorityLimiter` is a capacity limiter whose waiters are admitted by
priority, then first come.  A slot freed by ``release`` is handed directly to
the chosen waiter before it is woken, so nothing is admitted twice and no
wake-up is lost; a waiter that is cancelled simply leaves the queue.

**Leaves that ask at the same instant.**  trio runs the tasks of one
scheduling round in an arbitrary order, so "first come" among requests made
at the same trio instant is trio's order.  When the leaves sharing a limiter
have different priorities (the compiler tells it, :meth:`note`), the first
request to find a slot free does not take it at once: it lets the current
scheduling round finish, so every request made in that round is queued,
and then hands the free slots out by priority.  (A request that comes a
round later — a leaf one nursery deeper — queues behind the ones admitted.)  A limiter whose leaves all share one priority keeps
the direct path and pays nothing for this.

**Aging** keeps low priorities from starving: a waiter gains one priority
level for every ``aging`` admissions made while it waits (default 64).  So
no request can be overtaken by work that arrived more than ``3 * aging``
admissions after it: a LOW waiter under an endless stream of CRITICAL work
is admitted once the CRITICAL requests that came before that horizon are
served.
"""

from __future__ import annotations

import collections
import math
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, Final, Protocol

import enum

import attrs
import trio

from ._check import _count, _show


class Priority(enum.IntEnum):
    """Order of admission when leaves wait for the same limiter (higher first).

    Set with ``.priority(p)``; it orders only leaves that queue for the same
    slots, and changes no result.

    >>> from combinators import Priority, pure, run_sync
    >>> Priority.HIGH > Priority.NORMAL
    True
    >>> run_sync(pure(str.upper).priority(Priority.CRITICAL).limit(1), "ok")
    <Success: OK>
    """

    LOW = 0
    NORMAL = 1
    HIGH = 2
    CRITICAL = 3


DEFAULT_AGING: Final = 64


@attrs.define(eq=False)
class _Waiter:
    task: trio.lowlevel.Task
    level: int
    enqueued_at: int
    active: bool = True


class PriorityLimiter:
    """A capacity limiter with priority admission and aging (see module docs).

    ``.limit(n)`` makes one per run; create one yourself and pass it,
    ``.limit(limiter)``, to share its slots across trees and runs (an API's
    concurrency is per key, for the whole process; see docs/asyncio.md).

    >>> from combinators import each, run_sync
    >>> from combinators.testing import Calls, fake, run_virtual
    >>> api, calls = PriorityLimiter(2), Calls()
    >>> ask = fake("ask", delay=1, fn=str.upper, calls=calls).limit(api)
    >>> run_virtual(each(ask), ["a", "b", "c"]), calls.peak
    ((<Success: ['A', 'B', 'C']>, 2.0), 2)
    """

    def __init__(self, total: int, *, aging: int = DEFAULT_AGING) -> None:
        # Whole numbers only: a float total (2.5) would admit three, and an
        # aging of 0 would divide by zero at the first ranking.
        self.total: Final = _count(total, "PriorityLimiter()", "total")
        self.aging: Final = _count(aging, "PriorityLimiter()", "aging")
        self.borrowed = 0
        self.admissions = 0
        self.waiting = 0
        self._priorities: set[int] = set()
        self._by_priority = False
        self._gathering = False
        self._queues: tuple[collections.deque[_Waiter], ...] = tuple(
            collections.deque() for _ in Priority
        )

    def __repr__(self) -> str:
        return f"<PriorityLimiter {self.borrowed}/{self.total} busy, {self.waiting} waiting>"

    def note(self, priority: Priority) -> None:
        """Record that a leaf of ``priority`` will use this limiter (at compile time)."""
        self._priorities.add(int(priority))
        self._by_priority = len(self._priorities) > 1

    def try_acquire(self) -> bool:
        """Take a slot now if one is free and nobody is queued for it.

        Never when leaves of several priorities share the limiter: their
        requests of one instant are gathered first (see :meth:`acquire`).
        Unlike ``acquire`` it is no checkpoint: a caller about to start a
        leaf checks for cancellation itself.
        """
        if self.borrowed < self.total and not self.waiting and not self._by_priority:
            self.borrowed += 1
            self.admissions += 1
            return True
        return False

    async def acquire(self, priority: Priority = Priority.NORMAL) -> None:
        """Wait for a slot; higher priority first, then first come."""
        # Cancellation is checked before a slot is taken, never after: a
        # Cancelled raised while holding a slot would leak it.
        await trio.lowlevel.checkpoint_if_cancelled()
        gathered = False
        if not self._by_priority:
            if self.try_acquire():
                return
        elif self.borrowed < self.total and not self._gathering:
            # Let the other requests of this instant queue first (module docs).
            self._gathering = gathered = True
            try:
                await trio.lowlevel.cancel_shielded_checkpoint()
            finally:
                self._gathering = False
        waiter = _Waiter(trio.lowlevel.current_task(), int(priority), self.admissions)
        self._queues[waiter.level].append(waiter)
        self.waiting += 1
        if gathered:
            self._admit_while_free()
            if not waiter.active:
                # Admitted; but a cancel that came during the shielded round
                # must not run the leaf: give the slot on and leave.
                try:
                    await trio.lowlevel.checkpoint_if_cancelled()
                except BaseException:
                    self.release()
                    raise
                return

        def abort(_: Callable[[], Any]) -> trio.lowlevel.Abort:
            waiter.active = False
            self.waiting -= 1
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    def _admit_while_free(self) -> None:
        """Hand every free slot to the best waiter, waking all but the caller."""
        me = trio.lowlevel.current_task()
        while self.borrowed < self.total and self.waiting:
            waiter = self._next_waiter()
            if waiter is None:
                return
            self.borrowed += 1
            self._admit(waiter, wake=waiter.task is not me)

    def release(self) -> None:
        """Give the slot back, or hand it to the next waiter.

        Like ``trio.CapacityLimiter``, releasing a slot nobody holds is a
        ``RuntimeError`` (and changes nothing).
        """
        if self.borrowed <= 0:
            msg = f"{self!r}: release() without a matching acquire(); no slot is held"
            raise RuntimeError(msg)
        waiter = self._next_waiter() if self.waiting else None
        if waiter is None:
            self.borrowed -= 1
            return
        self._admit(waiter, wake=True)

    def _admit(self, waiter: _Waiter, *, wake: bool) -> None:
        """``waiter`` has a slot (already counted): take it off the queue and wake it."""
        waiter.active = False
        self.waiting -= 1
        self.admissions += 1
        if wake:
            trio.lowlevel.reschedule(waiter.task)

    def _next_waiter(self) -> _Waiter | None:
        best: _Waiter | None = None
        best_rank = -1
        for queue in self._queues:
            while queue and not queue[0].active:
                queue.popleft()
            if not queue:
                continue
            head = queue[0]
            rank = head.level + (self.admissions - head.enqueued_at) // self.aging
            # Ties go to the earlier arrival (smaller enqueued_at).
            if best is None or rank > best_rank or (
                rank == best_rank and head.enqueued_at < best.enqueued_at
            ):
                best, best_rank = head, rank
        if best is not None:
            self._queues[best.level].popleft()
        return best


class StartWindow:
    """At most ``calls`` weight of starts in any ``per``-second window of trio time.

    A sliding log, not a refilling bucket: a bucket that starts full lets
    ``2 * calls`` starts through in the first window, which is exactly the
    burst that earns an HTTP 429.  Waiters are served first come (trio's
    ``Lock`` is fair).

    ``.rate(calls, per=...)`` makes one per run; create one yourself and
    pass it, ``.rate(window)``, to share it across trees and runs (a
    provider's requests-per-minute is per API key, for the whole process;
    see docs/asyncio.md):

    >>> from combinators import pure, run_sync
    >>> api = StartWindow(60, per=60.0)
    >>> run_sync(pure(str.upper).rate(api), "hi")
    <Success: HI>
    """

    def __init__(self, calls: float, per: float, *, name: str = "rate") -> None:
        for what, value in (("calls", calls), ("per", per)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
                msg = f"StartWindow: {what} must be a finite number > 0, got {_show(value)}"
                raise ValueError(msg)
        self.calls: Final = calls
        self.per: Final = per
        self.name: Final = name  # the rate node's, for messages
        self._log: collections.deque[tuple[float, float]] = collections.deque()
        self._used = 0.0
        self._lock = trio.Lock()

    async def take(self, weight: float = 1.0) -> None:
        """Wait until a start of ``weight`` fits in the window, then record it.

        ``weight`` must be a finite number >= 0 (a ``ValueError`` otherwise,
        before the window changes): one ``nan`` would leave the running
        total ``nan`` for good, a negative one would make room that is not
        there.
        """
        checked = as_weight(weight)
        if checked is None:
            msg = f"rate {self.name!r}: a start's weight must be a finite number >= 0, got {_show(weight)}"
            raise ValueError(msg)
        weight = checked
        async with self._lock:
            while True:
                now = trio.current_time()
                while self._log and self._log[0][0] + self.per <= now:
                    self._used -= self._log.popleft()[1]
                if not self._log:
                    self._used = 0.0  # no rounding drift survives an empty window
                # A start heavier than the whole window goes alone.
                if not self._log or self._used + weight <= self.calls + 1e-9:
                    self._log.append((now, weight))
                    self._used += weight
                    return
                await trio.sleep_until(self._log[0][0] + self.per)


def as_weight(value: object) -> float | None:
    """``value`` as a start's weight, or None if a window cannot count it.

    A weight is a finite real number >= 0; ``bool`` is refused like
    everywhere else in the library (a predicate given as a weight).
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        weight = float(value)
    except OverflowError:
        return None
    return weight if 0 <= weight < math.inf else None


# --------------------------------------------------------------------------
# Sharing a limiter or a window across runs


class Admission(Protocol):
    """What a leaf sees of a limiter: a per-run :class:`PriorityLimiter` or a shared one's view."""

    @property
    def total(self) -> int: ...

    def note(self, priority: Priority) -> None: ...

    async def acquire(self, priority: Priority = Priority.NORMAL) -> None: ...

    def release(self) -> None: ...


class _RunGuard:
    """Which trio run uses a shared limiter or window now, and how many of its leaves.

    trio's primitives belong to one run (one thread): a waiter parked by one
    run cannot be woken by another.  So while any leaf of one run holds or
    waits for the object, a leaf of another run is refused with a message
    (see docs/asyncio.md); once idle, the object goes to whichever run uses
    it next.  ``offset`` is ``trio time - perf_counter`` when the current
    run last used the object: a window's log is moved to the next run's
    clock by it (every trio run has a clock of its own).
    """

    __slots__ = ("lock", "offset", "run", "users")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.run: object | None = None
        self.users = 0
        self.offset: float | None = None

    def enter(self, what: object) -> float | None:
        """Count one user in the current run; give the old run's offset when the run changed."""
        token = trio.lowlevel.current_trio_token()
        with self.lock:
            if self.users and self.run is not token:
                msg = (
                    f"{what!r} is in use by another trio run (another thread) right now: a shared "
                    f"limiter or rate window serves one trio run at a time. Use one object per "
                    f"thread, or run every request through combinators.aio.run on one event loop "
                    f"(its runs share one trio run)"
                )
                raise RuntimeError(msg)
            moved = self.offset if self.run is not token else None
            self.run = token
            self.users += 1
            return moved

    def leave(self) -> None:
        with self.lock:
            self.users -= 1


#: The guard of each shared object (a registry, so the objects stay plain).
_GUARDS: weakref.WeakKeyDictionary[object, _RunGuard] = weakref.WeakKeyDictionary()
_GUARDS_LOCK: Final = threading.Lock()


def _guard(obj: object) -> _RunGuard:
    with _GUARDS_LOCK:
        guard = _GUARDS.get(obj)
        if guard is None:
            guard = _GUARDS[obj] = _RunGuard()
        return guard


class SharedLimiter:
    """A shared :class:`PriorityLimiter` as the leaves of one plan see it (``.limit(limiter)``).

    Every acquire first checks that no other trio run uses the limiter
    (:class:`_RunGuard`); the admission itself is the limiter's, so
    priorities and aging hold across all the runs and trees that share it.
    """

    __slots__ = ("_guard", "limiter")

    def __init__(self, limiter: PriorityLimiter) -> None:
        self.limiter = limiter
        self._guard = _guard(limiter)

    @property
    def total(self) -> int:
        return self.limiter.total

    def note(self, priority: Priority) -> None:
        self.limiter.note(priority)

    async def acquire(self, priority: Priority = Priority.NORMAL) -> None:
        self._guard.enter(self.limiter)
        try:
            await self.limiter.acquire(priority)
        except BaseException:
            self._guard.leave()
            raise

    def release(self) -> None:
        try:
            self.limiter.release()
        finally:
            self._guard.leave()


class SharedWindow:
    """A shared :class:`StartWindow` as one plan sees it (``.rate(window)``): checked like :class:`SharedLimiter`."""

    __slots__ = ("_guard", "window")

    def __init__(self, window: StartWindow) -> None:
        self.window = window
        self._guard = _guard(window)

    @property
    def name(self) -> str:
        """The shared window's name, for messages."""
        return str(self.window.name)

    async def take(self, weight: float = 1.0) -> None:
        guard = self._guard
        old = guard.enter(self.window)
        try:
            offset = trio.current_time() - time.perf_counter()
            if old is not None and old != offset:
                # A new trio run, with a clock of its own: carry the log
                # over by the real time that passed between the runs.
                shift = offset - old
                log = self.window._log
                for i, (at, w) in enumerate(log):
                    log[i] = (at + shift, w)
            guard.offset = offset
            await self.window.take(weight)
            guard.offset = trio.current_time() - time.perf_counter()
        finally:
            guard.leave()
