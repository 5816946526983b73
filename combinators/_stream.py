"""``stream``: run one agent over many inputs, yielding outcomes as they finish.

The shape is trio's own: an async context manager that owns **one nursery**.
Inside it, ``max_concurrency`` worker tasks pull inputs lazily from a shared
source (an iterable, or an async iterable under a lock) and send
``(key, Result)`` pairs into a bounded memory channel; the body of the
``async with`` reads them.  A slow reader fills the channel, the workers
block on ``send`` and no new input is pulled: memory is bounded by
``max_concurrency + buffer`` outcomes however many inputs there are.
Leaving the block (normally, by ``break`` or by an exception) cancels the
nursery's scope, so no task outlives the ``async with``.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Sized
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Literal, TypeVar, final, overload

import trio
from returns.result import Result

from ._cancel import keep_first_crash, open_nursery
from ._expr import Agent
from ._types import _OB
from ._observe import Observer
from ._run import compile_tree, outside_trio_message
from ._spend import SpendLimit

_I = TypeVar("_I")
_O = TypeVar("_O")
_E = TypeVar("_E")
_K = TypeVar("_K")
_T = TypeVar("_T")

_DONE: Any = object()


@final
class Outcomes(AsyncIterator[_T]):
    """The async iterator ``stream`` yields: outcomes in the order they finish.

    Iterate it with ``async for``; it ends when every input has been run.

    >>> import trio
    >>> from combinators import pure, stream
    >>> async def main() -> list[object]:
    ...     async with stream(pure(len), ["a", "bb"]) as outcomes:
    ...         assert isinstance(outcomes, Outcomes)
    ...         return sorted([item async for item in outcomes])
    >>> trio.run(main)
    [(0, <Success: 1>), (1, <Success: 2>)]
    """

    def __init__(self, receive: trio.MemoryReceiveChannel[_T]) -> None:
        self._receive = receive

    def __aiter__(self) -> Outcomes[_T]:
        return self

    async def __anext__(self) -> _T:
        try:
            return await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise StopAsyncIteration from None


class _Source:
    """A shared, lazily pulled input source; ``pull`` gives ``(index, item)`` or ``_DONE``."""

    def __init__(self, inputs: Iterable[Any] | AsyncIterable[Any]) -> None:
        self.index = 0
        self._sync: Any = None
        self._async: Any = None
        self._lock = trio.Lock()
        if isinstance(inputs, AsyncIterable):
            self._async = aiter(inputs)
        elif isinstance(inputs, Iterable):
            self._sync = iter(inputs)
        else:
            msg = f"stream() inputs must be an iterable or an async iterable, got {type(inputs).__name__} {inputs!r}"
            raise TypeError(msg)

    async def pull(self) -> Any:
        if self._sync is not None:
            # next() never yields to trio, so workers can share the iterator.
            # (The worker's send() after each input is its checkpoint.)
            item = next(self._sync, _DONE)
        else:
            # An async generator refuses concurrent __anext__ calls: take turns.
            async with self._lock:
                try:
                    item = await self._async.__anext__()
                except StopAsyncIteration:
                    item = _DONE
        if item is _DONE:
            return _DONE
        i = self.index
        self.index += 1
        return i, item


@overload
def stream(
    agent: Agent[_I, _O, _E],
    inputs: Iterable[_I] | AsyncIterable[_I],
    *,
    max_concurrency: int = ...,
    buffer: int | None = ...,
    keyed: Literal[False] = ...,
    observer: Observer | None = ...,
    budget: SpendLimit[_OB] | None = ...,
) -> AbstractAsyncContextManager[Outcomes[tuple[int, Result[_O, _E | _OB]]]]: ...
@overload
def stream(
    agent: Agent[_I, _O, _E],
    inputs: Iterable[tuple[_K, _I]] | AsyncIterable[tuple[_K, _I]],
    *,
    max_concurrency: int = ...,
    buffer: int | None = ...,
    keyed: Literal[True],
    observer: Observer | None = ...,
    budget: SpendLimit[_OB] | None = ...,
) -> AbstractAsyncContextManager[Outcomes[tuple[_K, Result[_O, _E | _OB]]]]: ...
def stream(
    agent: Agent[Any, Any, Any],
    inputs: Iterable[Any] | AsyncIterable[Any],
    *,
    max_concurrency: int = 100,
    buffer: int | None = None,
    keyed: bool = False,
    observer: Observer | None = None,
    budget: SpendLimit[Any] | None = None,
) -> AbstractAsyncContextManager[Outcomes[tuple[Any, Result[Any, Any]]]]:
    """Run ``agent`` on every input, yielding ``(key, Result)`` as each finishes.

    ``inputs`` is any iterable or async iterable, pulled lazily: an input is
    taken only when a worker is free.  The key is the input's position
    (``0, 1, ...``); with ``keyed=True`` the inputs are ``(key, input)``
    pairs and the key is yours.  At most ``max_concurrency`` inputs are in
    flight, and at most ``max_concurrency`` leaves run at once over all of
    them (the run's limiter, as in :func:`run`).  Finished outcomes wait in a
    channel of ``buffer`` places (default: ``max_concurrency``); when it is
    full, no new input starts until the reader catches up.  A ``budget``
    covers every input together, as in :func:`run` (docs/spend.md).

    The agent is compiled once and its runner reused for every input; input
    ``i`` runs at node path ``f"{agent.name}[{i}]"``.  Leaving the
    ``async with`` block, by ``break`` or by an exception, cancels the
    inputs still running and leaves no task behind.  An unexpected exception
    from the agent (or from the input iterator) cancels the rest and is
    raised from the ``async with`` as itself.

    >>> import trio
    >>> from combinators import pure
    >>> async def main() -> list[tuple[int, object]]:
    ...     async with stream(pure(lambda x: x * x), range(4), max_concurrency=2) as outcomes:
    ...         return sorted([(i, r.unwrap()) async for i, r in outcomes])
    >>> trio.run(main)
    [(0, 0), (1, 1), (2, 4), (3, 9)]
    """
    if not isinstance(agent, Agent):
        msg = f"stream() expects an Agent, got {type(agent).__name__} {agent!r}"
        raise TypeError(msg)
    if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1:
        msg = f"stream(): max_concurrency must be an int >= 1, got {max_concurrency!r}"
        raise ValueError(msg)
    if buffer is None:
        buffer = max_concurrency
    if isinstance(buffer, bool) or not isinstance(buffer, int) or buffer < 0:
        msg = f"stream(): buffer must be an int >= 0, got {buffer!r}"
        raise ValueError(msg)
    if not isinstance(inputs, Iterable | AsyncIterable):
        msg = f"stream() inputs must be an iterable or an async iterable, got {type(inputs).__name__} {inputs!r}"
        raise TypeError(msg)
    return _open(agent, inputs, max_concurrency, buffer, keyed, observer, budget)


@asynccontextmanager
async def _open(
    agent: Agent[Any, Any, Any],
    inputs: Iterable[Any] | AsyncIterable[Any],
    width: int,
    buffer: int,
    keyed: bool,
    observer: Observer | None,
    budget: SpendLimit[Any] | None = None,
) -> AsyncIterator[Outcomes[tuple[Any, Result[Any, Any]]]]:
    if not trio.lowlevel.in_trio_task():
        raise RuntimeError(outside_trio_message("stream()"))
    runner = compile_tree(agent, max_concurrency=width, observer=observer, budget=budget)
    name = agent.name
    source = _Source(inputs)
    send, receive = trio.open_memory_channel[tuple[Any, Result[Any, Any]]](buffer)

    def start(nursery: trio.Nursery, crash: list[BaseException]) -> None:
        scope = nursery.cancel_scope

        async def worker(out: trio.MemorySendChannel[tuple[Any, Result[Any, Any]]]) -> None:
            # Closed with close(), not `async with`: aclose() is a checkpoint,
            # and a Cancelled raised there would replace a KeyboardInterrupt
            # on its way out.
            try:
                try:
                    while (got := await source.pull()) is not _DONE:
                        i, item = got
                        key: Any = i
                        if keyed:
                            try:
                                key, item = item
                            except (TypeError, ValueError) as exc:
                                msg = f"stream(keyed=True): input {i} must be a (key, input) pair, got {item!r}"
                                raise TypeError(msg) from exc
                        result = await runner(item, f"{name}[{i}]")
                        await out.send((key, result))
                except Exception as exc:
                    keep_first_crash(crash, scope, exc)
            finally:
                out.close()

        workers = min(width, len(inputs)) if isinstance(inputs, Sized) else width
        for _ in range(workers):
            nursery.start_soon(worker, send.clone())
        send.close()

    async with serve(receive, start) as outcomes:
        yield outcomes


@asynccontextmanager
async def serve(
    receive: trio.MemoryReceiveChannel[_T], start: Callable[[trio.Nursery, list[BaseException]], None]
) -> AsyncIterator[Outcomes[_T]]:
    """Give the reader ``receive`` while ``start``'s producers run in one nursery.

    ``start(nursery, crash)`` starts the producers; one that meets a bug
    records it with ``keep_first_crash(crash, nursery.cancel_scope, exc)``.
    Leaving the ``async with`` (early, or by the reader's own exception)
    cancels the producers, and no task outlives it.  The reader's exception
    leaves as itself, and so does a producer's bug, not inside an
    ExceptionGroup.
    """
    crash: list[BaseException] = []
    pending: BaseException | None = None
    async with open_nursery() as nursery:
        scope = nursery.cancel_scope
        start(nursery, crash)
        try:
            yield Outcomes(receive)
        except BaseException as exc:
            # Held until the nursery has closed, so the reader's own
            # exception leaves as itself, not inside an ExceptionGroup.
            pending = exc
        finally:
            scope.cancel()
            receive.close()
    if crash and (pending is None or isinstance(pending, trio.Cancelled)):
        raise crash[0]
    if pending is not None:
        raise pending
