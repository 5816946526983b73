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
import itertools
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any, Final, Literal, Never, TypeVar, get_args

import attrs
import trio
import trio.testing
from returns.result import Failure, Result, Success

from ._expr import Agent, agent
from ._retry import Backoff
from ._run import run

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

_I = TypeVar("_I")
_O = TypeVar("_O")
_E = TypeVar("_E")


@attrs.define
class Calls:
    """What a fake agent saw: inputs started, finished and cancelled.

    ``running`` is how many run now and ``peak`` the most that ran at once.

    >>> from combinators import each
    >>> calls = Calls()
    >>> _ = run_virtual(each(fake("f", delay=1, calls=calls)).limit(2), [1, 2, 3])
    >>> sorted(calls.finished), calls.peak, calls.running
    ([1, 2, 3], 2, 0)
    """

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

    >>> calls = Calls()
    >>> slow = fake("slow", delay=10, value="late", calls=calls)
    >>> run_virtual(slow.timeout(3) | fake("quick", delay=1, fn=str.upper), "x")[0].failure().seconds
    3.0
    >>> calls.cancelled
    ['x']
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
    """A typed fake: succeeds with ``value`` after ``delay`` seconds of trio time.

    >>> both = sleeper("a", 2.0, 1) | sleeper("b", 3.0, "two")
    >>> run_virtual(both, None)
    (<Success: (1, 'two')>, 3.0)
    """

    async def body(_: object) -> Result[_O, Never]:
        await trio.sleep(delay)
        return Success(value)

    body.__name__ = name
    return agent(body)


def run_virtual(
    tree: Agent[_I, _O, _E], x: _I, **kwargs: Any
) -> tuple[Result[_O, _E], float]:
    """Run ``tree`` under ``MockClock(autojump_threshold=0)``; give (result, elapsed).

    Virtual time: an hour of sleeping leaves takes milliseconds.  Keyword
    arguments go to :func:`combinators.run` (``observer=``, ``max_concurrency=``...).

    >>> run_virtual(fake("a", delay=3600, value=1) >> fake("b", delay=60, value=2), None)
    (<Success: 2>, 3660.0)
    """

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

    >>> from combinators import each, run
    >>> async def main() -> TaskCounter:
    ...     counter = TaskCounter()
    ...     trio.lowlevel.add_instrument(counter)
    ...     await run(each(fake("f", delay=1)), range(5))
    ...     trio.lowlevel.remove_instrument(counter)
    ...     return counter
    >>> counter = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    >>> counter.alive, counter.peak >= 5
    (0, True)
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


#: The node kinds :func:`agent_trees` can build (see there).
TreeKind = Literal["then", "parallel", "transform", "map_error", "fallback", "recover", "timeout", "retry", "limit"]

_ALL_KINDS: Final[tuple[TreeKind, ...]] = get_args(TreeKind)

#: The kinds :func:`agent_trees` builds unless told otherwise.
DEFAULT_KINDS: Final[tuple[TreeKind, ...]] = (
    "then",
    "parallel",
    "transform",
    "map_error",
    "fallback",
    "recover",
    "timeout",
    "retry",
)

#: The backoff of the ``retry`` nodes :func:`agent_trees` builds: whole
#: seconds, no jitter, so a reference can add the waits up exactly.
_TREE_BACKOFF: Final = Backoff(base=1.0, factor=2.0, cap=4.0)

#: The seconds of the ``timeout`` nodes :func:`agent_trees` builds: half
#: seconds, so a timeout never ties with a leaf that sleeps whole seconds.
_TREE_TIMEOUTS: Final = (0.5, 1.5, 2.5, 4.5, 7.5)


def _identity(value: Any) -> Any:
    return value


def agent_trees(
    *,
    max_leaves: int = 10,
    leaves: SearchStrategy[Agent[Any, Any, Any]] | None = None,
    kinds: Collection[TreeKind] = DEFAULT_KINDS,
    limit_leaves: SearchStrategy[Agent[Any, Any, Any]] | None = None,
    functions: SearchStrategy[Callable[[Any], Any]] | None = None,
    max_width: int = 2,
) -> SearchStrategy[Agent[Any, Any, Any]]:
    """A hypothesis strategy of random trees, the one the library's own tests use.

    ``leaves`` draws the leaves; by default :func:`fake` leaves named
    ``leafN`` that sleep 0–5 whole seconds of trio time and succeed with
    their input or fail with their name.  ``kinds`` picks how they are
    combined: ``then`` (``>>``), ``parallel`` (a ``|`` group of 2 to
    ``max_width`` operands), ``transform``, ``map_error`` and ``recover``
    (with a function drawn from ``functions``, the identity by default),
    ``fallback``, ``timeout`` (0.5, 1.5, 2.5, 4.5 or 7.5 seconds),
    ``retry`` (0–3 more attempts, ``Backoff(base=1, factor=2, cap=4)``) and ``limit``
    (``.limit(1)`` over a ``|`` group of 2 to ``max_width`` leaves drawn
    from ``limit_leaves``, default ``leaves``; they then run one at a time,
    admitted in either order when they arrive together, so pass leaves
    that succeed where a test needs the time exactly).  Whole-second leaves with half-second
    timeouts and whole-second backoffs keep every run's virtual time exact,
    so a test can compare times as well as results.

    Use it to check properties of your own wrappers — that every run ends,
    that no task outlives it, that an observer sees every node.  Needs
    hypothesis (a test dependency, imported only when called).

    >>> from hypothesis import given, settings
    >>> @settings(max_examples=20, deadline=None)
    ... @given(agent_trees(max_leaves=4))
    ... def test_every_run_ends_within_its_budget(tree: Agent[Any, Any, Any]) -> None:
    ...     result, elapsed = run_virtual(tree.timeout(100), 0)
    ...     assert elapsed < 100
    >>> test_every_run_ends_within_its_budget()
    """
    from hypothesis import strategies as st

    unknown = set(kinds) - set(_ALL_KINDS)
    if unknown or not kinds:
        msg = f"agent_trees(): kinds must be some of {_ALL_KINDS}, got {sorted(kinds)!r}"
        raise ValueError(msg)
    if max_width < 2:
        msg = f"agent_trees(): max_width must be at least 2, got {max_width!r}"
        raise ValueError(msg)
    counter = itertools.count()

    @st.composite
    def fake_leaf(draw: st.DrawFn) -> Agent[Any, Any, Any]:
        name = f"leaf{next(counter)}"
        delay = draw(st.integers(0, 5))
        if draw(st.booleans()):
            return fake(name, delay=delay, fn=_identity)
        return fake(name, delay=delay, error=name)

    base = leaves if leaves is not None else fake_leaf()
    fns = functions if functions is not None else st.just(_identity)
    limited = limit_leaves if limit_leaves is not None else base

    def group(operands: list[Agent[Any, Any, Any]]) -> Agent[Any, Any, Any]:
        tree: Agent[Any, Any, Any] = operands[0] | operands[1]
        for operand in operands[2:]:
            tree = tree | operand
        return tree

    def extend(children: SearchStrategy[Agent[Any, Any, Any]]) -> SearchStrategy[Agent[Any, Any, Any]]:
        build: dict[TreeKind, SearchStrategy[Agent[Any, Any, Any]]] = {
            "then": st.builds(lambda a, b: a >> b, children, children),
            "parallel": st.lists(children, min_size=2, max_size=max_width).map(group),
            "transform": st.builds(lambda a, f: a.transform(f), children, fns),
            "map_error": st.builds(lambda a, f: a.map_error(f), children, fns),
            "fallback": st.builds(lambda a, b: a.fallback(b), children, children),
            "recover": st.builds(lambda a, f: a.recover(f), children, fns),
            "timeout": st.builds(lambda a, s: a.timeout(s), children, st.sampled_from(_TREE_TIMEOUTS)),
            "retry": st.builds(lambda a, n: a.retry(n, backoff=_TREE_BACKOFF), children, st.integers(0, 3)),
            "limit": st.lists(limited, min_size=2, max_size=max_width).map(lambda ops: group(ops).limit(1)),
        }
        return st.one_of([build[kind] for kind in _ALL_KINDS if kind in kinds])

    return st.recursive(base, extend, max_leaves=max_leaves)


__all__ = ["DEFAULT_KINDS", "Calls", "TaskCounter", "TreeKind", "agent_trees", "fake", "run_virtual", "sleeper"]

__test__ = {
    # Values and type aliases carry no docstring of their own.
    "TreeKind": """The node kinds :func:`agent_trees` can build, as a ``Literal`` type.

    >>> from typing import get_args
    >>> get_args(TreeKind)[-1]
    'limit'
    >>> kinds: tuple[TreeKind, ...] = ("then", "parallel")
    >>> strategy = agent_trees(kinds=kinds)
    """,
    "DEFAULT_KINDS": """The kinds :func:`agent_trees` builds by default (all but ``limit``).

    >>> "limit" in DEFAULT_KINDS, "retry" in DEFAULT_KINDS
    (False, True)
    >>> strategy = agent_trees(kinds=(*DEFAULT_KINDS, "limit"))
    """,
}
