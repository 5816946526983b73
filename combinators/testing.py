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

from . import Budget, Usage, collect, each, first_success, pure, repeat, switch, when
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
TreeKind = Literal[
    "then",
    "parallel",
    "transform",
    "map_error",
    "fallback",
    "recover",
    "timeout",
    "retry",
    "limit",
    "limit_n",
    "first_success",
    "collect",
    "each",
    "switch",
    "when",
    "repeat",
    "bind",
    "budget",
]

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

#: The costs the default leaves declare when ``budget`` nodes are built,
#: and the cost limits of those budgets.
_LEAF_COSTS: Final = (0.0, 0.1, 0.25, 1.0)
_BUDGET_COSTS: Final = (0.0, 0.3, 1.0, 2.5)


def _identity(value: Any) -> Any:
    return value


@attrs.frozen
class _Remainder:
    """A ``switch`` key: ``x % n`` for an int, else the length of ``repr(x)`` modulo ``n``."""

    n: int

    def __call__(self, x: Any) -> int:
        return (x if isinstance(x, int) else len(repr(x))) % self.n


@attrs.frozen
class _Divisible:
    """A ``when`` / ``repeat`` condition: :class:`_Remainder` gives 0."""

    n: int

    def __call__(self, x: Any) -> bool:
        return _Remainder(self.n)(x) == 0


@attrs.frozen
class _Copies:
    """The list an ``each`` fans out over: ``n`` copies of the input."""

    n: int

    def __call__(self, x: Any) -> list[Any]:
        return [x] * self.n


@attrs.frozen
class _Choose:
    """A ``bind`` choice: the option ``key(value)`` picks, modulo their number."""

    key: Callable[[Any], int]
    options: tuple[Agent[Any, Any, Any], ...]

    def __call__(self, value: Any) -> Agent[Any, Any, Any]:
        return self.options[self.key(value) % len(self.options)]


def agent_trees(
    *,
    max_leaves: int = 10,
    leaves: SearchStrategy[Agent[Any, Any, Any]] | None = None,
    kinds: Collection[TreeKind] = DEFAULT_KINDS,
    limit_leaves: SearchStrategy[Agent[Any, Any, Any]] | None = None,
    functions: SearchStrategy[Callable[[Any], Any]] | None = None,
    max_width: int = 2,
    keys: SearchStrategy[Callable[[Any], int]] | None = None,
    predicates: SearchStrategy[Callable[[Any], object]] | None = None,
    budgets: SearchStrategy[Usage | Budget] | None = None,
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

    More kinds, none built unless asked for (``DEFAULT_KINDS`` stays as
    it was, so existing strategies draw the same trees):

    * ``limit_n`` — ``.limit(n)``, ``n`` from 1 to ``max_width``, over any
      subtree, so limits nest;
    * ``first_success`` and ``collect`` — over 2 to ``max_width`` operands
      (``collect`` also over an ``each`` when ``each`` is asked for);
    * ``each`` — ``pure(copies) >> each(child, at_most=n)``: the input
      copied ``n`` times, 0 to ``max_width``, so ``at_most`` is exact;
    * ``switch`` — ``switch(key, {0: ..., 1: ...}, default=...)`` with 1 to
      ``max_width`` branches and a default or none, so a key may find no
      branch; ``bind`` — ``child.bind(f)``, ``f`` picking one of 1 to
      ``max_width`` options by ``key(value) % len(options)``; keys from
      ``keys`` (default: the input, or the length of its repr, modulo 2–4);
    * ``when`` and ``repeat`` (``until=``, ``max_times`` 1–4) with a
      condition from ``predicates`` (default: that key is 0);
    * ``budget`` — ``.budget(limit)`` with limits from ``budgets`` (default
      ``Usage(cost=c)``, ``c`` in 0, 0.3, 1 or 2.5).  A budget needs leaves
      that declare costs: the default leaves then declare
      ``Usage(cost=c)``, ``c`` in 0, 0.1, 0.25 or 1; leaves of your own
      must call ``.costs(...)``.

    Every choice function is a frozen callable holding what it chooses
    from, so a reference evaluator can read the real tree and call the
    nodes' own functions.

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

    With control flow, leaves of your own and a key of your own:

    >>> from hypothesis import strategies as st
    >>> numbers = st.integers(0, 3).map(lambda d: fake(f"add{d}", delay=d, fn=lambda x: x + d))
    >>> flows = agent_trees(
    ...     leaves=numbers,
    ...     kinds=("then", "switch", "when", "repeat"),
    ...     keys=st.just(lambda x: x % 3),
    ...     max_width=3,
    ... )
    >>> @settings(max_examples=20, deadline=None)
    ... @given(flows, st.integers(0, 9))
    ... def test_a_flow_leaks_no_task(tree: Agent[Any, Any, Any], x: int) -> None:
    ...     counter = TaskCounter()
    ...     async def main() -> None:
    ...         trio.lowlevel.add_instrument(counter)
    ...         await run(tree, x)
    ...         trio.lowlevel.remove_instrument(counter)
    ...     trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    ...     assert counter.alive == 0
    >>> test_a_flow_leaks_no_task()
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
    priced = "budget" in kinds

    @st.composite
    def fake_leaf(draw: st.DrawFn) -> Agent[Any, Any, Any]:
        name = f"leaf{next(counter)}"
        delay = draw(st.integers(0, 5))
        if draw(st.booleans()):
            leaf = fake(name, delay=delay, fn=_identity)
        else:
            leaf = fake(name, delay=delay, error=name)
        return leaf.costs(Usage(cost=draw(st.sampled_from(_LEAF_COSTS)))) if priced else leaf

    base = leaves if leaves is not None else fake_leaf()
    fns = functions if functions is not None else st.just(_identity)
    limited = limit_leaves if limit_leaves is not None else base
    choices = keys if keys is not None else st.integers(2, 4).map(_Remainder)
    conditions = predicates if predicates is not None else st.integers(2, 4).map(_Divisible)
    limits = budgets if budgets is not None else st.sampled_from(_BUDGET_COSTS).map(lambda c: Usage(cost=c))
    widths = st.integers(0, max_width)

    def group(operands: list[Agent[Any, Any, Any]]) -> Agent[Any, Any, Any]:
        tree: Agent[Any, Any, Any] = operands[0] | operands[1]
        for operand in operands[2:]:
            tree = tree | operand
        return tree

    def fan_out(child: Agent[Any, Any, Any], n: int, *, collecting: bool = False) -> Agent[Any, Any, Any]:
        inner = each(child, at_most=n)
        return pure(_Copies(n)).named("copies") >> (collect(inner) if collecting else inner)

    def choice(
        key: Callable[[Any], int], branches: list[Agent[Any, Any, Any]], default: Agent[Any, Any, Any] | None
    ) -> Agent[Any, Any, Any]:
        table = dict(enumerate(branches))
        return switch(key, table) if default is None else switch(key, table, default=default)

    def extend(children: SearchStrategy[Agent[Any, Any, Any]]) -> SearchStrategy[Agent[Any, Any, Any]]:
        some = st.lists(children, min_size=1, max_size=max_width)
        many = st.lists(children, min_size=2, max_size=max_width)
        build: dict[TreeKind, Callable[[], SearchStrategy[Agent[Any, Any, Any]]]] = {
            "then": lambda: st.builds(lambda a, b: a >> b, children, children),
            "parallel": lambda: many.map(group),
            "transform": lambda: st.builds(lambda a, f: a.transform(f), children, fns),
            "map_error": lambda: st.builds(lambda a, f: a.map_error(f), children, fns),
            "fallback": lambda: st.builds(lambda a, b: a.fallback(b), children, children),
            "recover": lambda: st.builds(lambda a, f: a.recover(f), children, fns),
            "timeout": lambda: st.builds(lambda a, s: a.timeout(s), children, st.sampled_from(_TREE_TIMEOUTS)),
            "retry": lambda: st.builds(lambda a, n: a.retry(n, backoff=_TREE_BACKOFF), children, st.integers(0, 3)),
            "limit": lambda: st.lists(limited, min_size=2, max_size=max_width).map(lambda ops: group(ops).limit(1)),
            "limit_n": lambda: st.builds(lambda a, n: a.limit(n), children, st.integers(1, max_width)),
            "first_success": lambda: many.map(lambda ops: first_success(*ops)),
            "collect": lambda: st.one_of(
                many.map(lambda ops: collect(group(ops))),
                *([st.builds(lambda a, n: fan_out(a, n, collecting=True), children, widths)] if "each" in kinds else []),
            ),
            "each": lambda: st.builds(fan_out, children, widths),
            "switch": lambda: st.builds(choice, choices, some, st.none() | children),
            "when": lambda: st.builds(when, conditions, children, children),
            "repeat": lambda: st.builds(
                lambda a, until, n: repeat(a, until=until, max_times=n), children, conditions, st.integers(1, 4)
            ),
            "bind": lambda: st.builds(lambda a, key, ops: a.bind(_Choose(key, tuple(ops))), children, choices, some),
            "budget": lambda: st.builds(lambda a, limit: a.budget(limit), children, limits),
        }
        return st.one_of([build[kind]() for kind in _ALL_KINDS if kind in kinds])

    return st.recursive(base, extend, max_leaves=max_leaves)


__all__ = ["DEFAULT_KINDS", "Calls", "TaskCounter", "TreeKind", "agent_trees", "fake", "run_virtual", "sleeper"]

__test__ = {
    # Values and type aliases carry no docstring of their own.
    "TreeKind": """The node kinds :func:`agent_trees` can build, as a ``Literal`` type.

    >>> from typing import get_args
    >>> get_args(TreeKind)[:3]
    ('then', 'parallel', 'transform')
    >>> kinds: tuple[TreeKind, ...] = ("then", "parallel")
    >>> strategy = agent_trees(kinds=kinds)
    """,
    "DEFAULT_KINDS": """The kinds :func:`agent_trees` builds by default: ``>>``, ``|`` and the wrappers.

    The others (``limit``, ``each``, ``switch``, ``budget``...) are opt-in.

    >>> "limit" in DEFAULT_KINDS, "each" in DEFAULT_KINDS, "retry" in DEFAULT_KINDS
    (False, False, True)
    >>> strategy = agent_trees(kinds=(*DEFAULT_KINDS, "limit"))
    """,
}
