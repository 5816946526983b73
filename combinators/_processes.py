"""Worker processes for sync leaf functions (``agent.on(processes())``), from trio-parallel."""

from __future__ import annotations

import importlib
import pickle
from collections.abc import Callable
from typing import Any, TypeVar, final

import attrs
import trio

from ._exceptions import BuildError
from ._executor_api import call_in_worker, require_picklable, unwrap_outcome

_T = TypeVar("_T")
_R = TypeVar("_R")


def _process_dumps() -> Callable[[Any], bytes]:
    # trio-parallel sends with cloudpickle when it is installed, else pickle;
    # refuse exactly what it cannot send.
    try:
        cloudpickle = importlib.import_module("cloudpickle")
    except ImportError:
        return pickle.dumps
    dumps: Callable[[Any], bytes] = cloudpickle.dumps
    return dumps


_LIMITERS: trio.lowlevel.RunVar[dict[ProcessPool, trio.CapacityLimiter]] = trio.lowlevel.RunVar(
    "combinators_process_limiters"
)


@final
@attrs.frozen(eq=False)
class ProcessPool:
    """Worker processes from trio-parallel; build with :func:`processes`.

    Compared by identity: each ``processes()`` call is its own pool of
    slots (``max_workers``), shared by every ``.on()`` that uses it.

    >>> pool = processes(4)
    >>> pool == processes(4), pool.name, pool.kill_on_cancel
    (False, 'processes', True)
"""

    max_workers: int | None
    kill_on_cancel: bool
    @property
    def name(self) -> str:
        """A short name for messages."""
        return "processes"

    def check(self, fn: Callable[[Any], Any], where: str) -> None:
        """Refuse a function that cannot be pickled to a worker process."""
        require_picklable(fn, where, _process_dumps(), "pickling")

    def _limiter(self) -> trio.CapacityLimiter:
        import trio_parallel

        if self.max_workers is None:
            limiter: trio.CapacityLimiter = trio_parallel.current_default_worker_limiter()
            return limiter
        try:
            table = _LIMITERS.get()
        except LookupError:
            table = {}
            _LIMITERS.set(table)
        found = table.get(self)
        if found is None:
            found = table[self] = trio.CapacityLimiter(self.max_workers)
        return found

    async def call(self, fn: Callable[[_T], _R], x: _T) -> _R:
        """Run ``fn(x)`` in a worker process; a cancel kills the worker."""
        import trio_parallel

        outcome = await trio_parallel.run_sync(
            call_in_worker,
            fn,
            x,
            kill_on_cancel=self.kill_on_cancel,
            limiter=self._limiter(),
        )
        if not self.kill_on_cancel:
            # The worker was shielded and finished; if we were cancelled
            # meanwhile, the value arrives too late to be the result.
            await trio.lowlevel.checkpoint_if_cancelled()
        value: _R = unwrap_outcome(outcome, "worker process")
        return value


def processes(max_workers: int | None = None, *, kill_on_cancel: bool = True) -> ProcessPool:
    """Run leaf functions in worker processes (trio-parallel).

    ``max_workers`` bounds how many run at once (default: trio-parallel's
    limit, the number of CPUs).  Only sync functions that pickle can move:
    a lambda or local function is refused when ``.on()`` is called.
    With ``kill_on_cancel`` (the default) a cancelled leaf's worker is
    killed at once; without it, cancellation waits for the function to end.

    >>> pool = processes(2)
    >>> pool.max_workers
    2
    """
    if max_workers is not None and (isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1):
        msg = f"processes(): max_workers must be an int >= 1 or None, got {max_workers!r}"
        raise BuildError(msg)
    return ProcessPool(max_workers, bool(kill_on_cancel))
