"""Running trees from asyncio: one trio guest run per event loop, shared by every caller.

trio allows one run per thread, and an asyncio program has one loop per
thread, so each loop gets one :class:`_Host`: a trio run started lazily in
*guest mode* (``trio.lowlevel.start_guest_run``) on that loop, driven by the
loop's own callbacks.  ``aio.run`` hands it a :class:`_Request`; the host
runs each request in a task of its own, under a cancel scope of its own,
with the loop as the bridge for asyncio leaves.

Cancellation crosses both ways:

* the asyncio caller cancelled (a client disconnect, ``wait_for``,
  ``asyncio.timeout``) cancels its run's asyncio leaf tasks at once, in
  its own turn of the loop, and its request's scope in trio through the
  token; the caller's ``CancelledError`` goes on only once the request's
  task has finished — every trio leaf and every asyncio leaf of that run
  has stopped;
* a trio cancel scope (``.timeout()``, a fail-fast sibling) over an asyncio
  leaf cancels the leaf's asyncio task and waits for it
  (:meth:`GuestBridge.call`).

The host lives as long as its loop: a *keeper* asyncio task that only
waits is cancelled when ``asyncio.run`` (or any runner that cancels the
remaining tasks) tears the loop down, and it then stops the trio run and
waits for it to end, so no trio run is left behind and nothing warns.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar

import attrs
import outcome
import trio
from returns.result import Result

from ._aio_leaf import BRIDGE
from ._expr import Agent
from ._types import _OB
from ._run import run as trio_run

if TYPE_CHECKING:
    from ._journal_store import Journal
    from ._observe import Observer
    from ._spend import SpendLimit

_I = TypeVar("_I")
_O = TypeVar("_O")
_E = TypeVar("_E")


class GuestBridge:
    """Runs asyncio leaves on the host loop from the trio guest run's tasks."""

    def __init__(self, loop: asyncio.AbstractEventLoop, token: trio.lowlevel.TrioToken) -> None:
        self.loop = loop
        self.token = token
        #: Leaves whose asyncio task has finished, to wake in trio in one batch.
        self._finished: list[trio.Event] = []

    def _task_done(self, done: trio.Event) -> None:
        """An asyncio task ended (called on the loop, outside trio): wake its leaf.

        Through the token, which is thread-safe and wakes trio's I/O wait;
        the tasks that end in one turn of the loop share one wake-up, as
        requests do (``_Host.enqueue``).
        """
        self._finished.append(done)
        if len(self._finished) == 1:
            self.token.run_sync_soon(self._wake)

    def _wake(self) -> None:
        finished, self._finished = self._finished, []
        for done in finished:
            done.set()

    async def call(self, fn: Callable[[Any], Awaitable[Any]], x: Any, name: str) -> Any:
        return await self.call_for(None, fn, x, name)

    async def call_for(
        self, request: _Request | None, fn: Callable[[Any], Awaitable[Any]], x: Any, name: str
    ) -> Any:
        """Run ``fn(x)`` in an asyncio task, kept on ``request`` while it runs."""
        # Guest ticks run on the loop's thread, so the task can be made here.
        task = self.loop.create_task(_awaited(fn, x), name=f"combinators leaf {name}")
        done = trio.Event()
        if request is not None:
            request.tasks.add(task)
            task.add_done_callback(request.tasks.discard)
        task.add_done_callback(lambda _: self._task_done(done))
        try:
            await done.wait()
        except BaseException:
            # Cancelled in trio: cancel the asyncio task and wait until its
            # `finally` has run, so it never outlives the leaf.
            task.cancel()
            with trio.CancelScope(shield=True):
                await done.wait()
            if not task.cancelled():
                task.exception()  # seen: asyncio must not log it as lost
            raise
        if task.cancelled():
            if request is not None and request.cancel_requested:
                # Its caller was cancelled and cancelled the task at once;
                # trio hears of it through the token, right behind.
                await trio.sleep_forever()
            await trio.lowlevel.checkpoint_if_cancelled()
            msg = f"the asyncio task of leaf {name!r} was cancelled from outside its run"
            raise RuntimeError(msg)
        return task.result()


@attrs.frozen
class _RequestBridge:
    """The bridge as one request's leaves see it: their asyncio tasks are kept on the request.

    So a cancelled caller cancels them at once, in its own turn of the loop,
    without waiting for trio to hear of the cancel first.
    """

    host: GuestBridge
    request: _Request

    async def call(self, fn: Callable[[Any], Awaitable[Any]], x: Any, name: str) -> Any:
        return await self.host.call_for(self.request, fn, x, name)


async def _awaited(fn: Callable[[Any], Awaitable[Any]], x: Any) -> Any:
    return await fn(x)


@attrs.define(eq=False)
class _Request:
    """One ``aio.run`` call as the host sees it."""

    agent: Agent[Any, Any, Any]
    x: Any
    options: dict[str, Any]
    #: Settled by the host's task once nothing of the run is left running.
    done: asyncio.Future[Any]
    scope: trio.CancelScope | None = None
    cancel_requested: bool = False
    #: The asyncio tasks of this run's asyncio leaves, while they run.
    tasks: set[asyncio.Task[Any]] = attrs.Factory(set)

    def cancel(self) -> None:
        """Cancel the run (called in trio, through the token)."""
        self.cancel_requested = True
        if self.scope is not None:
            self.scope.cancel()

    def settle(self, value: outcome.Outcome[Any] | None) -> None:
        """Resolve ``done``: a Result, an exception, or None for cancelled."""
        if self.done.done():
            return
        match value:
            case outcome.Value(result):
                self.done.set_result(result)
            case outcome.Error(exc):
                self.done.set_exception(exc)
            case _:
                self.done.cancel()


class _Host:
    """The trio guest run on one asyncio loop (see the module docs)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.ready: asyncio.Future[None] = loop.create_future()
        self.finished: asyncio.Future[None] = loop.create_future()
        self.token: trio.lowlevel.TrioToken | None = None
        self.bridge: GuestBridge | None = None
        self.nursery: trio.Nursery | None = None
        self.stopping = False
        self._stop: trio.Event | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._pending: list[_Request] = []
        self._active: set[_Request] = set()

    @property
    def closing(self) -> bool:
        """Stopping, or about to: its keeper has a cancel coming (loop teardown)."""
        return self.stopping or (self._keeper is not None and self._keeper.cancelling() > 0)

    def start(self) -> None:
        try:
            trio.lowlevel.start_guest_run(
                self._main,
                run_sync_soon_threadsafe=self.loop.call_soon_threadsafe,
                run_sync_soon_not_threadsafe=self.loop.call_soon,
                done_callback=self._done,
                # asyncio owns signal.set_wakeup_fd (add_signal_handler).
                host_uses_signal_set_wakeup_fd=True,
            )
        except RuntimeError as exc:
            msg = (
                "combinators.aio.run: a trio run is already active in this thread (trio allows one "
                "per thread); inside trio, use `await combinators.run(...)` instead"
            )
            raise RuntimeError(msg) from exc
        self._keeper = self.loop.create_task(self._keep(), name="combinators trio guest run")

    async def _main(self) -> None:
        self.token = trio.lowlevel.current_trio_token()
        self.bridge = GuestBridge(self.loop, self.token)
        self._stop = trio.Event()
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            self.ready.set_result(None)
            await self._stop.wait()
            nursery.cancel_scope.cancel()

    def _done(self, result: outcome.Outcome[None]) -> None:
        self.stopping = True
        if not self.ready.done():
            self.ready.set_exception(RuntimeError("combinators.aio: the trio guest run ended before it started"))
        if isinstance(result, outcome.Error):
            self.loop.call_exception_handler(
                {"message": "combinators.aio: the trio guest run crashed", "exception": result.error}
            )
        # Requests the run never settled (it crashed, or their task never
        # started) must not leave their callers waiting forever.
        lost = RuntimeError("combinators.aio: the trio guest run ended before this run finished")
        for request in [*self._pending, *self._active]:
            request.settle(outcome.Error(lost))
        self._pending.clear()
        # Out of the registry: the host holds its loop, so its entry would
        # keep a closed loop alive for good.
        with _HOSTS_LOCK:
            if _HOSTS.get(self.loop) is self:
                del _HOSTS[self.loop]
        if not self.finished.done():
            self.finished.set_result(None)

    async def _keep(self) -> None:
        """Wait for the loop's teardown (a cancel), then stop the trio run and wait for its end."""
        try:
            await self.loop.create_future()
        finally:
            self.shutdown()
            await _wait_through_cancels(self.finished)

    def shutdown(self) -> None:
        """Stop taking requests; cancel the running ones and end the trio run."""
        if self.stopping:
            return
        self.stopping = True
        if self.token is not None:
            try:
                self.token.run_sync_soon(self._stop_in_trio)
            except trio.RunFinishedError:
                pass

    def _stop_in_trio(self) -> None:
        if self._stop is not None:
            self._stop.set()

    def enqueue(self, request: _Request) -> None:
        """Hand ``request`` to trio (called on the loop).

        Requests made in one turn of the loop go over in one batch: every
        ``run_sync_soon`` wakes trio's I/O thread, and a burst of wake-ups
        costs the loop's thread the GIL again and again (benchmarks/aio.py).
        Both ends run on the loop's thread, so the list needs no lock.
        """
        assert self.token is not None
        self._pending.append(request)
        if len(self._pending) == 1:
            self.token.run_sync_soon(self._start_pending)

    def _start_pending(self) -> None:
        """Start the requests handed over (called in trio, through the token)."""
        pending, self._pending = self._pending, []
        closed = self.nursery is None or self._stop is None or self._stop.is_set()
        for request in pending:
            if closed or self.nursery is None:
                request.settle(outcome.Error(RuntimeError("combinators.aio: the event loop is shutting down")))
            else:
                self._active.add(request)
                self.nursery.start_soon(self._serve, request)

    async def _serve(self, request: _Request) -> None:
        assert self.bridge is not None
        BRIDGE.set(_RequestBridge(self.bridge, request))
        settled: outcome.Outcome[Any] | None = None
        try:
            with trio.CancelScope() as scope:
                request.scope = scope
                if request.cancel_requested:
                    scope.cancel()
                try:
                    result = await trio_run(request.agent, request.x, **request.options)
                except BaseException as exc:
                    if _holds_cancel(exc):
                        raise  # to the cancel scope it belongs to
                    # A bug (or a KeyboardInterrupt raised in a leaf) is this
                    # caller's, as from run(): it must not end the guest run
                    # that the other callers share.
                    settled = outcome.Error(exc)
                else:
                    settled = outcome.Value(result)
        finally:
            # Reached once the whole run has stopped (its nurseries closed):
            # only now may the caller go on.  None means cancelled.
            self._active.discard(request)
            request.settle(settled)


def _holds_cancel(exc: BaseException) -> bool:
    """Whether ``exc`` is, or carries, a ``trio.Cancelled`` (never a value for the caller)."""
    if isinstance(exc, trio.Cancelled):
        return True
    return isinstance(exc, BaseExceptionGroup) and exc.subgroup(trio.Cancelled) is not None


#: The host of each loop whose guest run is alive (one trio run per loop's
#: thread); a host leaves it when its run ends.
_HOSTS: dict[asyncio.AbstractEventLoop, _Host] = {}
_HOSTS_LOCK: Final = threading.Lock()  # loops of other threads use the registry too


async def _host() -> _Host:
    loop = asyncio.get_running_loop()
    while True:
        with _HOSTS_LOCK:
            host = _HOSTS.get(loop)
        if host is None:
            host = _Host(loop)
            host.start()
            with _HOSTS_LOCK:
                _HOSTS[loop] = host
            break
        if not host.closing:
            break
        # A host being torn down (its keeper was cancelled): let it end,
        # then start anew (or use the one another caller started meanwhile).
        await asyncio.shield(host.finished)
        with _HOSTS_LOCK:
            if _HOSTS.get(loop) is host:
                del _HOSTS[loop]
    if not host.ready.done():
        await asyncio.shield(host.ready)
    host.ready.result()
    return host


async def _wait_through_cancels(fut: asyncio.Future[Any]) -> None:
    """Wait until ``fut`` is done, whatever cancels arrive meanwhile.

    Only for callers already on their way out with a ``CancelledError``
    they re-raise (``run``, the keeper's ``finally``): the cancels that
    arrive here are that same request to stop.
    """
    while not fut.done():
        try:
            await asyncio.shield(fut)
        except asyncio.CancelledError:
            continue
        except Exception:
            break
    if not fut.cancelled():
        fut.exception()  # seen, so asyncio does not log it


async def run(
    agent: Agent[_I, _O, _E],
    x: _I,
    *,
    max_concurrency: int | None = None,
    observer: Observer | None = None,
    journal: Journal | None = None,
    run_id: str | None = None,
    budget: SpendLimit[_OB] | None = None,
) -> Result[_O, _E | _OB]:
    """Run ``agent`` on ``x`` from asyncio code and give its ``Result``: ``run`` for asyncio.

    Same arguments and result as :func:`combinators.run`.  The tree runs in
    this loop's trio guest run, shared by every concurrent caller, without
    blocking the loop.  Cancelling the awaiting task cancels the whole run;
    its ``CancelledError`` comes once nothing of the run is left running.

    >>> import asyncio
    >>> from combinators import pure
    >>> asyncio.run(run(pure(str.upper), "hi"))
    <Success: HI>
    """
    host = await _host()
    assert host.token is not None  # set before ready
    request = _Request(
        agent,
        x,
        {
            "max_concurrency": max_concurrency,
            "observer": observer,
            "journal": journal,
            "run_id": run_id,
            "budget": budget,
        },
        host.loop.create_future(),
    )
    try:
        host.enqueue(request)
    except trio.RunFinishedError as exc:
        msg = "combinators.aio: the event loop is shutting down"
        raise RuntimeError(msg) from exc
    try:
        result: Result[_O, _E | _OB] = await asyncio.shield(request.done)
    except asyncio.CancelledError:
        me = asyncio.current_task()
        if request.done.cancelled() and me is not None and not me.cancelling():
            # Not this caller's cancel: the guest run was stopped under it.
            msg = "combinators.aio: the trio guest run was stopped (its keeper task was cancelled) during this run"
            raise RuntimeError(msg) from None
        if not request.done.done():
            # The asyncio leaves stop now, the trio side at its next tick
            # (it learns of the cancel through the token).
            request.cancel_requested = True
            for task in list(request.tasks):
                task.cancel()
            try:
                host.token.run_sync_soon(request.cancel)
            except trio.RunFinishedError:
                pass
            await _wait_through_cancels(request.done)
        elif not request.done.cancelled():
            request.done.exception()
        raise
    return result
