"""Helpers for testing trees: fake agents, virtual time, and leak checks.

Like ``trio.testing``, this module is public: users test their own
pipelines with it.

>>> from combinators.testing import fake, run_virtual
>>> result, elapsed = run_virtual(fake("slow", delay=5.0, value=1), None)
>>> result, elapsed
(<Success: 1>, 5.0)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Never, TypeVar

import attrs
import trio
import trio.testing
from returns.result import Failure, Result, Success

from ._expr import Agent, agent
from ._run import run

_I = TypeVar("_I")
_O = TypeVar("_O")
_E = TypeVar("_E")


@attrs.define
class Calls:
    """What a fake agent saw: inputs started, finished and cancelled."""

    started: list[Any] = attrs.Factory(list)
    finished: list[Any] = attrs.Factory(list)
    cancelled: list[Any] = attrs.Factory(list)
    running: int = 0
    peak: int = 0


def fake(
    name: str,
    *,
    delay: float = 0.0,
    value: Any = None,
    error: Any = None,
    fn: Callable[[Any], Any] | None = None,
    calls: Calls | None = None,
) -> Agent[Any, Any, Any]:
    """An agent that sleeps ``delay`` seconds of trio time, then answers.

    It fails with ``error`` when that is not None; otherwise it succeeds
    with ``fn(x)`` when ``fn`` is given, else ``value``.  ``calls`` records
    starts, finishes, cancellations and the peak number running at once.
    """
    log = calls if calls is not None else Calls()

    async def body(x: Any) -> Result[Any, Any]:
        log.started.append(x)
        log.running += 1
        log.peak = max(log.peak, log.running)
        try:
            await trio.sleep(delay)
        except trio.Cancelled:
            log.cancelled.append(x)
            raise
        finally:
            log.running -= 1
        log.finished.append(x)
        if error is not None:
            return Failure(error)
        return Success(fn(x) if fn is not None else value)

    body.__name__ = name
    return agent(body)


def sleeper(name: str, delay: float, value: _O) -> Agent[object, _O, Never]:
    """A typed fake: succeeds with ``value`` after ``delay`` seconds of trio time."""

    async def body(_: object) -> Result[_O, Never]:
        await trio.sleep(delay)
        return Success(value)

    body.__name__ = name
    return agent(body)


def run_virtual(
    tree: Agent[_I, _O, _E], x: _I, **kwargs: Any
) -> tuple[Result[_O, _E], float]:
    """Run ``tree`` under ``MockClock(autojump_threshold=0)``; give (result, elapsed)."""

    async def main() -> tuple[Result[_O, _E], float]:
        start = trio.current_time()
        result = await run(tree, x, **kwargs)
        return result, trio.current_time() - start

    clock = trio.testing.MockClock(autojump_threshold=0)
    return trio.run(functools.partial(main), clock=clock)


class TaskCounter(trio.abc.Instrument):
    """A trio instrument counting tasks alive at once (for leak and width checks).

    Use as ``trio.lowlevel.add_instrument(counter)`` inside a run; ``alive``
    is the number of tasks spawned and not yet exited, ``peak`` its maximum,
    ``spawned`` the total.
    """

    def __init__(self) -> None:
        self.alive = 0
        self.peak = 0
        self.spawned = 0

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        self.alive += 1
        self.spawned += 1
        self.peak = max(self.peak, self.alive)

    def task_exited(self, task: trio.lowlevel.Task) -> None:
        self.alive -= 1


def agent_trees(*, max_leaves: int = 10) -> Any:
    """A hypothesis strategy of random trees of :func:`fake` leaves.

    Leaves sleep 0–5 seconds of trio time and succeed (with their input) or
    fail (with their name); they are combined with ``>>``, ``|``,
    ``transform``, ``map_error``, ``fallback``, ``recover``, ``timeout`` and
    ``retry``.  Use it to check properties of your own wrappers — that every
    run ends, that no task outlives it, that an observer sees every node.
    Needs hypothesis (a test dependency, imported only when called).
    """
    from hypothesis import strategies as st

    from ._retry import Backoff

    counter = iter(range(1 << 62))

    @st.composite
    def leaf(draw: Any) -> Agent[Any, Any, Any]:
        name = f"leaf{next(counter)}"
        delay = draw(st.integers(0, 5))
        if draw(st.booleans()):
            return fake(name, delay=delay, fn=lambda x: x)
        return fake(name, delay=delay, error=name)

    def extend(children: Any) -> Any:
        return st.one_of(
            st.builds(lambda a, b: a >> b, children, children),
            st.builds(lambda a, b: a | b, children, children),
            st.builds(lambda a: a.transform(lambda v: v), children),
            st.builds(lambda a: a.map_error(lambda e: e), children),
            st.builds(lambda a, b: a.fallback(b), children, children),
            st.builds(lambda a: a.recover(lambda e: e), children),
            st.builds(lambda a, s: a.timeout(s), children, st.sampled_from([0.5, 2.5, 6.5])),
            st.builds(lambda a, n: a.retry(n, backoff=Backoff(base=1)), children, st.integers(0, 2)),
        )

    return st.recursive(leaf(), extend, max_leaves=max_leaves)
