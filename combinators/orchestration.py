"""The object-style orchestration API, as a thin layer over the combinators.

Users of agent SDKs know orchestrators, tasks, chains and aggregators.  This
module gives them those names, the Python way (keyword arguments or
immutable ``with_*`` builders, ``async`` methods, ``Result`` values), and
every one of them does the same thing: it **builds one combinator tree and
runs it with** :func:`combinators.run`.  There is no second engine: each
object has an ``as_agent``/``tree`` method that returns the very tree its
``execute`` runs -- concurrency limit and timeouts included -- so anything an
orchestrator does can be drawn, observed, journaled or nested like any other
agent, and nesting behaves exactly like ``execute``.

=====================================  ======================================
object style                           combinator tree it builds
=====================================  ======================================
``AgentTask(name, a, x)``              ``(succeed(x) >> a).named(name)``
``task.with_priority(p)``              ``.priority(p)``
``with_timeout(s)``                    ``.timeout(s)`` on every task's tree
``ParallelOrchestrator().tree(ts)``    ``tasks(t1, t2, ..., stop_at='failure')``
                                       (the task pool, below): a
                                       cancelling ``Workflow`` of the tasks
``collecting_errors()``                ``tasks(t1, t2, ...)``: as
                                       ``collect(t1 | t2 | ...)``
``with_concurrency(n)``                ``tasks(..., max_concurrency=n)``
``FirstSuccessfulAggregator()``        ``first_success(t1, t2, ...)``
``MajorityVoteAggregator(key)``        ``vote(t1, t2, ..., key=key)``
``AverageConfidenceAggregator()``      ``average_confidence(t1, t2, ...)``
  ... under ``with_concurrency(n)``    ``tasks(...) >> <the same>(picks)``
a ``ResultAggregator`` ``r``           ``tasks(...) >> agent(r.aggregate)``
``execute_streaming(ts)``              ``tasks(collect(t1) >> hand_over,
                                       ...)`` read as ``stream``'s
                                       ``Outcomes``
``AgentChain().then(a).then(b)``       ``a >> b``
``then_with_transform(b, f)``          ``pure(f) >> b``
``then_with_fallback(b, fallback)``    ``b.fallback(c)`` / ``b.recover(f)``
``SequentialOrchestrator()``           the chain, ``.named("chain")``
``continuing_on_failure()``            each link wrapped to carry its
                                       failures (``collect``, ``|``,
                                       ``when``) >> ``ChainOutcome``
``HierarchicalOrchestrator``           ``Workflow``: ``add(..., after=)``
``add_dependency(node, on)``           per dependency; ``build(on_failure)``
``with_concurrency(n)``                ``.limit(n)`` on that workflow
``execute(...)``                       ``run(tree, ...)``, at most
                                       unwrapping the value
=====================================  ======================================

The task pool (``_orchestration_pool``) is the one node kind this layer
adds.  The core's limits count *leaves* (``.limit(n)``,
``run(max_concurrency=n)``, and the width of ``each`` and ``stream``); the
reference's ``max_concurrency`` counts *tasks* (a task that is ``a | b``
holds one slot), and its fail-fast result still names every task's
outcome.  The pool is ``each``'s worker loop with its width given
directly: ``n`` workers pull the next task, in priority order, only when a
slot is free.  Everything else here is the public combinators, plus the
internal API of ``_internal``; docs/glossary.md maps the reference's words
to the core's.

See docs/orchestration.md for the decisions this layer takes where the
reference design is silent.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import AsyncIterator, Callable, Hashable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, Never, Protocol, TypeAlias, TypeVar, cast, final, overload

import attrs
import trio
from returns.result import Failure, Result, Success

from . import Agent, AgentTypeError, AllFailed, BuildError, Confident, CycleError, HasConfidence, NoMajority
from . import NodeCancelled, NodeFailed, NodeSkipped, NodeSucceeded, Outcomes, Priority, TimedOut
from . import Workflow, WorkflowFailed, WorkflowResult
from . import agent, average_confidence, collect, first_success, pure, run, succeed, vote, when
from ._internal import check_name, keep_first_crash, require_agent, serve
from ._internal import seconds as positive_seconds
from ._orchestration_pool import StopAt, TaskOutcomes, task_pool

if TYPE_CHECKING:
    from . import Observer

__all__ = [
    "AgentChain",
    "AgentTask",
    "AverageConfidenceAggregator",
    "ChainLink",
    "ChainOutcome",
    "CustomAggregator",
    "FirstSuccessfulAggregator",
    "HierarchicalOrchestrator",
    "MajorityVoteAggregator",
    "NodeCancelled",
    "NodeSkipped",
    "OrchestratorNode",
    "ParallelOrchestrator",
    "ResultAggregator",
    "SequentialOrchestrator",
    "StepFailure",
    "TaskPriority",
    "TimedOut",
]

_I = TypeVar("_I")
_I2 = TypeVar("_I2")
_O = TypeVar("_O")
_O2 = TypeVar("_O2")
_E = TypeVar("_E")
_E2 = TypeVar("_E2")
_E3 = TypeVar("_E3")
_T = TypeVar("_T")
_R = TypeVar("_R")
_RE = TypeVar("_RE")
_HC = TypeVar("_HC", bound=HasConfidence)
_Agg = TypeVar("_Agg")
_O_co = TypeVar("_O_co", covariant=True)
_E_co = TypeVar("_E_co", covariant=True)
_R_co = TypeVar("_R_co", covariant=True)
_RE_co = TypeVar("_RE_co", covariant=True)
_Flag = TypeVar("_Flag", bound=bool)

#: The reference design's ``TaskPriority`` is the library's :class:`Priority`.
TaskPriority: TypeAlias = Priority

#: A timeout: seconds of trio time, or a ``timedelta`` (Rust's ``Duration``).
_Seconds: TypeAlias = float | timedelta



def _seconds(value: object, where: str) -> float | None:
    """A timeout in seconds (``None`` stays ``None``); refuses what is not a positive duration."""
    return None if value is None else positive_seconds(value, where, "timeout")


def _width(value: object, where: str) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        msg = f"{where}: max_concurrency must be an int >= 1 or None, got {value!r}"
        raise BuildError(msg)
    return value


# --------------------------------------------------------------------------
# Tasks


@final
@attrs.frozen(init=False)
class AgentTask(Generic[_O_co, _E_co]):
    """One named unit of parallel work: ``agent`` run on the fixed ``input``.

    The tree it stands for is ``(succeed(input) >> agent).named(name)``,
    with ``.priority(priority)`` when the priority is not NORMAL.  mypy
    checks that ``input`` fits ``agent``; the task's type keeps only the
    output and error types (``AgentTask[Out, Err]``), so tasks whose agents
    take different inputs still share one list type.

    >>> from combinators import pure
    >>> AgentTask("double", pure(lambda x: x * 2), 21).as_agent()
    (succeed(21) >> pure(lambda)).named('double')
    """

    name: str
    agent: Agent[Any, _O_co, _E_co]
    input: Any
    priority: Priority

    def __init__(
        self, name: str, agent: Agent[_I, _O_co, _E_co], input: _I, priority: Priority = Priority.NORMAL
    ) -> None:
        check_name(name, "AgentTask")
        require_agent(agent, f"AgentTask {name!r}: agent", None)
        if not isinstance(priority, Priority):
            msg = f"AgentTask {name!r}: priority must be a TaskPriority, got {priority!r}"
            raise BuildError(msg)
        self.__attrs_init__(name, agent, input, priority)

    def with_priority(self, priority: Priority) -> AgentTask[_O_co, _E_co]:
        """The same task at another priority (a new task; this one is unchanged)."""
        if not isinstance(priority, Priority):
            msg = f"AgentTask {self.name!r}: priority must be a TaskPriority, got {priority!r}"
            raise BuildError(msg)
        return attrs.evolve(self, priority=priority)

    def as_agent(self, *, timeout: _Seconds | None = None) -> Agent[object, _O_co, _E_co | TimedOut]:
        """The task as an agent that ignores its input, optionally with a timeout.

        ``timeout`` is seconds of trio time or a ``timedelta``; the
        ``TimedOut`` it gives carries the task's own path.
        """
        seconds = _seconds(timeout, f"AgentTask {self.name!r}")
        tree: Agent[object, _O_co, _E_co | TimedOut] = succeed(self.input) >> self.agent
        if self.priority is not Priority.NORMAL:
            tree = tree.priority(self.priority)
        if seconds is not None:
            # Outermost, so that the TimedOut names the task's own path.
            tree = tree.timeout(seconds)
        return tree.named(self.name)


def _task_list(tasks: Iterable[AgentTask[Any, Any]], where: str) -> list[AgentTask[Any, Any]]:
    if isinstance(tasks, AgentTask) or not isinstance(tasks, Iterable):
        msg = f"{where}: expected a list of AgentTask, got {type(tasks).__name__} {tasks!r}"
        raise AgentTypeError(msg)
    out = list(tasks)
    seen: set[str] = set()
    for task in out:
        if not isinstance(task, AgentTask):
            hint = "; wrap it as AgentTask(name, agent, input)" if isinstance(task, Agent) else ""
            msg = f"{where}: expected AgentTask items, got {type(task).__name__} {task!r}{hint}"
            raise AgentTypeError(msg)
        if task.name in seen:
            msg = f"{where}: duplicate task name {task.name!r}; every task needs its own name"
            raise BuildError(msg)
        seen.add(task.name)
    return out


# --------------------------------------------------------------------------
# The task pool (``_orchestration_pool``) and reading one task's outcome from it


def _pick(name: str) -> Agent[TaskOutcomes, Any, Any]:
    """The outcome of task ``name`` from a pool's ``{name: Result}``, as this leaf's own."""

    async def pick(outcomes: TaskOutcomes) -> Result[Any, Any]:
        return outcomes[name]

    return agent(pick).named(name)


# --------------------------------------------------------------------------
# Aggregators


class ResultAggregator(Protocol[_R_co, _RE_co]):
    """What an orchestrator accepts as a custom aggregator: the reference's ``ResultAggregator`` trait.

    Any class with ``aggregate(results) -> Result`` fits, no base class
    needed.  ``results`` holds every task's outcome by task name, in task
    order (the tasks run to their end, at most ``max_concurrency`` at
    once); what ``aggregate`` returns is the orchestrator's result, so mypy
    types ``execute`` as ``Result[R, RE]``.  ``aggregate`` is a plain
    function: an exception it raises is a bug and propagates.

    >>> from returns.result import Success
    >>> class CountSuccesses:
    ...     def aggregate(self, results: dict[str, Result[object, object]]) -> Result[int, str]:
    ...         return Success(sum(isinstance(r, Success) for r in results.values()))
    >>> orchestrator = ParallelOrchestrator().with_aggregator(CountSuccesses())
    >>> import trio
    >>> from combinators import fail, succeed
    >>> trio.run(orchestrator.execute, [AgentTask("a", succeed(1), None), AgentTask("b", fail("x"), None)])
    <Success: 1>
    """

    def aggregate(self, results: dict[str, Result[Any, Any]], /) -> Result[_R_co, _RE_co]:
        """Combine every task's outcome (by task name, in task order) into one ``Result``."""
        ...


def _decide(aggregator: ResultAggregator[Any, Any]) -> Agent[TaskOutcomes, Any, Any]:
    async def decide(outcomes: TaskOutcomes) -> Result[Any, Any]:
        return aggregator.aggregate(outcomes)

    return agent(decide).named("aggregate")


class _FanOut:
    """A built-in aggregator: a fan-out combinator of the library."""

    #: The outcome that settles it, so a pool under a limit stops there.
    _stop: ClassVar[StopAt] = None

    def _fanout(self, agents: Sequence[Agent[Any, Any, Any]]) -> Agent[Any, Any, Any]:
        raise NotImplementedError  # pragma: no cover


@final
@attrs.frozen
class FirstSuccessfulAggregator(_FanOut):
    """Race the tasks; the first success wins and the rest are cancelled (``first_success``).

    >>> import trio
    >>> from combinators import fail, succeed
    >>> tasks = [AgentTask("a", fail("down"), None), AgentTask("b", succeed("ok"), None)]
    >>> trio.run(ParallelOrchestrator(aggregator=FirstSuccessfulAggregator()).execute, tasks)
    <Success: ok>
    """

    _stop: ClassVar[StopAt] = "success"

    def _fanout(self, agents: Sequence[Agent[Any, Any, Any]]) -> Agent[Any, Any, Any]:
        return first_success(*agents)


@final
@attrs.frozen
class MajorityVoteAggregator(_FanOut):
    """The success value more than half of the tasks agree on (``vote``), compared by ``key``.

    >>> import trio
    >>> from combinators import succeed
    >>> tasks = [AgentTask(n, succeed(v), None) for n, v in [("a", "Yes"), ("b", "yes"), ("c", "no")]]
    >>> trio.run(ParallelOrchestrator(aggregator=MajorityVoteAggregator(key=str.lower)).execute, tasks)
    <Success: Yes>
    """

    key: Callable[[Any], Hashable] | None = None

    def _fanout(self, agents: Sequence[Agent[Any, Any, Any]]) -> Agent[Any, Any, Any]:
        return vote(*agents, key=self.key)


@final
@attrs.frozen
class AverageConfidenceAggregator(_FanOut):
    """The mean ``confidence`` of the successful outputs (``average_confidence``).

    >>> import attrs, trio
    >>> from combinators import succeed
    >>> @attrs.frozen
    ... class Guess:
    ...     confidence: float
    >>> tasks = [AgentTask("a", succeed(Guess(0.5)), None), AgentTask("b", succeed(Guess(0.75)), None)]
    >>> trio.run(ParallelOrchestrator(aggregator=AverageConfidenceAggregator()).execute, tasks).unwrap().mean
    0.625
    """

    def _fanout(self, agents: Sequence[Agent[Any, Any, Any]]) -> Agent[Any, Any, Any]:
        return average_confidence(*agents)


@final
@attrs.frozen
class CustomAggregator(Generic[_R, _RE]):
    """A :class:`ResultAggregator` from a function: ``f`` turns ``{name: Result}`` into the result.

    The reference's ``CustomAggregator(|results| ...)``.  All tasks run to
    their end; ``f`` receives every outcome by task name, in task order.

    >>> from returns.result import Success
    >>> CustomAggregator(lambda rs: Success(len(rs))).aggregate({"a": Success(1)})
    <Success: 1>
    """

    f: Callable[[dict[str, Result[Any, Any]]], Result[_R, _RE]]

    def aggregate(self, results: dict[str, Result[Any, Any]], /) -> Result[_R, _RE]:
        """``f(results)``."""
        return self.f(results)


# --------------------------------------------------------------------------
# Parallel


def _outcomes_as_results(value: WorkflowResult | WorkflowFailed[Any], names: Sequence[str]) -> dict[str, Result[Any, Any]]:
    if isinstance(value, WorkflowResult):
        return {name: Success(value[name]) for name in names}
    out: dict[str, Result[Any, Any]] = {}
    for name, outcome in value.items:
        match outcome:
            case NodeSucceeded(v):
                out[name] = Success(v)
            case NodeFailed(error):
                out[name] = Failure(error)
            case _:
                out[name] = Failure(outcome)
    return out


def _check_aggregator(aggregator: object, where: str) -> None:
    if aggregator is None or isinstance(aggregator, _FanOut):
        return
    if not callable(getattr(aggregator, "aggregate", None)):
        msg = (
            f"{where}: aggregator must be FirstSuccessfulAggregator(), MajorityVoteAggregator(), "
            f"AverageConfidenceAggregator(), CustomAggregator(f) or any object with an "
            f"aggregate(results) method (a ResultAggregator); got {aggregator!r}"
        )
        raise AgentTypeError(msg)


@final
@attrs.frozen(init=False)
class ParallelOrchestrator(Generic[_Agg]):
    """Run named tasks at once, at most ``max_concurrency`` of them; a thin layer over the fan-outs.

    Immutable: configure it with keyword arguments or with the builders,
    each of which returns a new orchestrator (the reference's
    ``ParallelOrchestrator::new().with_concurrency(5).with_timeout(...)``)::

        ParallelOrchestrator(max_concurrency=5, timeout=30)
        ParallelOrchestrator().with_concurrency(5).with_timeout(timedelta(seconds=30))

    * ``max_concurrency`` / ``with_concurrency(n)``: at most ``n`` *tasks*
      in flight, however many leaves each holds (a task that is ``a | b``
      counts once).  A task starts only when a slot is free; waiting tasks
      are admitted by priority, then task order, deterministically.
    * ``timeout`` / ``with_timeout(s)``: per task, seconds or a
      ``timedelta``; it runs from the moment the task starts, not while it
      waits for a slot (``.timeout()`` on each task's tree).
    * ``collect_errors=False`` (default): fail-fast; the first failure
      cancels the tasks still running and starts no more.  The result still
      has every task: its ``Success``, its ``Failure``, or
      ``Failure(NodeCancelled(started))``.
    * ``collect_errors=True`` / ``collecting_errors()``: every task runs to
      its end and keeps its own ``Result``.
    * ``aggregator`` / ``with_aggregator(a)``: ``execute`` gives the
      aggregated ``Result`` instead (a built-in aggregator, or any
      :class:`ResultAggregator`).

    ``tree(tasks)`` is the agent ``execute`` runs, all of the above
    included: run or nest it and it behaves exactly like ``execute``.

    >>> ParallelOrchestrator().with_concurrency(2).collecting_errors()
    ParallelOrchestrator(max_concurrency=2, timeout=None, collect_errors=True, aggregator=None)
    """

    max_concurrency: int | None
    timeout: float | None
    collect_errors: bool
    aggregator: _Agg

    @overload
    def __init__(
        self: ParallelOrchestrator[None],
        *,
        max_concurrency: int | None = None,
        timeout: _Seconds | None = None,
        collect_errors: bool = False,
        aggregator: None = None,
    ) -> None: ...
    @overload
    def __init__(
        self: ParallelOrchestrator[FirstSuccessfulAggregator],
        *,
        max_concurrency: int | None = None,
        timeout: _Seconds | None = None,
        collect_errors: bool = False,
        aggregator: FirstSuccessfulAggregator,
    ) -> None: ...
    @overload
    def __init__(
        self: ParallelOrchestrator[MajorityVoteAggregator],
        *,
        max_concurrency: int | None = None,
        timeout: _Seconds | None = None,
        collect_errors: bool = False,
        aggregator: MajorityVoteAggregator,
    ) -> None: ...
    @overload
    def __init__(
        self: ParallelOrchestrator[AverageConfidenceAggregator],
        *,
        max_concurrency: int | None = None,
        timeout: _Seconds | None = None,
        collect_errors: bool = False,
        aggregator: AverageConfidenceAggregator,
    ) -> None: ...
    @overload
    def __init__(
        self: ParallelOrchestrator[ResultAggregator[_R, _RE]],
        *,
        max_concurrency: int | None = None,
        timeout: _Seconds | None = None,
        collect_errors: bool = False,
        aggregator: ResultAggregator[_R, _RE],
    ) -> None: ...
    def __init__(
        self,
        *,
        max_concurrency: int | None = None,
        timeout: _Seconds | None = None,
        collect_errors: bool = False,
        aggregator: Any = None,
    ) -> None:
        where = "ParallelOrchestrator"
        _check_aggregator(aggregator, where)
        self.__attrs_init__(_width(max_concurrency, where), _seconds(timeout, where), bool(collect_errors), aggregator)

    # -- builders (each gives a new orchestrator) ----------------------------

    def with_concurrency(self, max_concurrency: int | None) -> ParallelOrchestrator[_Agg]:
        """At most ``max_concurrency`` tasks at once (``None``: no limit); the reference's ``with_concurrency``."""
        return self._evolve(max_concurrency=_width(max_concurrency, "ParallelOrchestrator.with_concurrency()"))

    def with_timeout(self, timeout: _Seconds | None) -> ParallelOrchestrator[_Agg]:
        """A timeout per task, seconds or a ``timedelta`` (``None``: none); the reference's ``with_timeout``."""
        return self._evolve(timeout=_seconds(timeout, "ParallelOrchestrator.with_timeout()"))

    def collecting_errors(self, flag: bool = True) -> ParallelOrchestrator[_Agg]:
        """Let every task run to its end (``False``: fail-fast); the reference's ``collect_errors(true)``."""
        return self._evolve(collect_errors=bool(flag))

    def _evolve(self, **changes: Any) -> ParallelOrchestrator[_Agg]:
        # attrs.evolve runs __init__, so every change is checked again.
        new: ParallelOrchestrator[_Agg] = attrs.evolve(cast("Any", self), **changes)
        return new

    @overload
    def with_aggregator(self, aggregator: None) -> ParallelOrchestrator[None]: ...
    @overload
    def with_aggregator(self, aggregator: FirstSuccessfulAggregator) -> ParallelOrchestrator[FirstSuccessfulAggregator]: ...
    @overload
    def with_aggregator(self, aggregator: MajorityVoteAggregator) -> ParallelOrchestrator[MajorityVoteAggregator]: ...
    @overload
    def with_aggregator(
        self, aggregator: AverageConfidenceAggregator
    ) -> ParallelOrchestrator[AverageConfidenceAggregator]: ...
    @overload
    def with_aggregator(self, aggregator: ResultAggregator[_R, _RE]) -> ParallelOrchestrator[ResultAggregator[_R, _RE]]: ...
    def with_aggregator(self, aggregator: Any) -> ParallelOrchestrator[Any]:
        """Combine the outcomes with ``aggregator`` (``None``: a dict again); the reference's ``set_aggregator``."""
        new: ParallelOrchestrator[Any] = ParallelOrchestrator(
            max_concurrency=self.max_concurrency,
            timeout=self.timeout,
            collect_errors=self.collect_errors,
            aggregator=aggregator,
        )
        return new

    # -- the tree and running it ----------------------------------------------

    @overload
    def tree(
        self: ParallelOrchestrator[None], tasks: Iterable[AgentTask[_O, _E]]
    ) -> Agent[object, dict[str, Result[_O, _E | TimedOut | NodeCancelled]], Never]: ...
    @overload
    def tree(
        self: ParallelOrchestrator[FirstSuccessfulAggregator], tasks: Iterable[AgentTask[_O, _E]]
    ) -> Agent[object, _O, AllFailed[_E | TimedOut]]: ...
    @overload
    def tree(
        self: ParallelOrchestrator[MajorityVoteAggregator], tasks: Iterable[AgentTask[_O, _E]]
    ) -> Agent[object, _O, NoMajority]: ...
    @overload
    def tree(
        self: ParallelOrchestrator[AverageConfidenceAggregator], tasks: Iterable[AgentTask[_HC, _E]]
    ) -> Agent[object, Confident[_HC], AllFailed[_E | TimedOut]]: ...
    @overload
    def tree(
        self: ParallelOrchestrator[ResultAggregator[_R, _RE]], tasks: Iterable[AgentTask[Any, Any]]
    ) -> Agent[object, _R, _RE]: ...
    def tree(self, tasks: Iterable[AgentTask[Any, Any]]) -> Agent[object, Any, Any]:
        """The agent ``execute`` runs for these tasks, limit and timeouts included (its input is ignored).

        Without an aggregator its success value is ``execute``'s dict,
        ``{name: Result}`` in task order, and it never fails (a failure is
        in the dict); with one, its outcome is the aggregator's ``Result``.
        """
        return self._tree(_task_list(tasks, "ParallelOrchestrator.tree()"))

    def _tree(self, tasks: list[AgentTask[Any, Any]]) -> Agent[object, Any, Any]:
        agents = [t.as_agent(timeout=self.timeout) for t in tasks]
        priorities = [t.priority for t in tasks]
        width = self.max_concurrency
        agg: object = self.aggregator
        if agg is None:
            return task_pool(agents, priorities, width, None if self.collect_errors else "failure").named("parallel")
        if not tasks:
            msg = f"ParallelOrchestrator: the aggregator {agg!r} needs at least one task"
            raise BuildError(msg)
        if isinstance(agg, _FanOut):
            if width is None:
                return agg._fanout(agents).named("parallel")
            # Under a limit the tasks go through the pool (which stops where
            # the aggregator is settled) and the same combinator decides on
            # their outcomes.
            picks = [_pick(t.name) for t in tasks]
            return (task_pool(agents, priorities, width, agg._stop) >> agg._fanout(picks)).named("parallel")
        return (task_pool(agents, priorities, width, None) >> _decide(cast("ResultAggregator[Any, Any]", agg))).named(
            "parallel"
        )

    @overload
    async def execute(
        self: ParallelOrchestrator[None], tasks: Iterable[AgentTask[_O, _E]], *, observer: Observer | None = None
    ) -> dict[str, Result[_O, _E | TimedOut | NodeCancelled]]: ...
    @overload
    async def execute(
        self: ParallelOrchestrator[FirstSuccessfulAggregator],
        tasks: Iterable[AgentTask[_O, _E]],
        *,
        observer: Observer | None = None,
    ) -> Result[_O, AllFailed[_E | TimedOut]]: ...
    @overload
    async def execute(
        self: ParallelOrchestrator[MajorityVoteAggregator],
        tasks: Iterable[AgentTask[_O, _E]],
        *,
        observer: Observer | None = None,
    ) -> Result[_O, NoMajority]: ...
    @overload
    async def execute(
        self: ParallelOrchestrator[AverageConfidenceAggregator],
        tasks: Iterable[AgentTask[_HC, _E]],
        *,
        observer: Observer | None = None,
    ) -> Result[Confident[_HC], AllFailed[_E | TimedOut]]: ...
    @overload
    async def execute(
        self: ParallelOrchestrator[ResultAggregator[_R, _RE]],
        tasks: Iterable[AgentTask[Any, Any]],
        *,
        observer: Observer | None = None,
    ) -> Result[_R, _RE]: ...
    async def execute(self, tasks: Iterable[AgentTask[Any, Any]], *, observer: Observer | None = None) -> Any:
        """``run(self.tree(tasks), None)``: ``{name: Result}`` in task order, or the aggregated ``Result``."""
        tree = self._tree(_task_list(tasks, "ParallelOrchestrator.execute()"))
        result = await run(tree, None, observer=observer)
        return result if self.aggregator is not None else result.unwrap()

    def execute_streaming(
        self, tasks: Iterable[AgentTask[_O, _E]], *, buffer: int | None = None, observer: Observer | None = None
    ) -> AbstractAsyncContextManager[Outcomes[tuple[str, Result[_O, _E | TimedOut]]]]:
        """``(name, Result)`` pairs as each task finishes: ``async with ... as results: async for ...``.

        The same task pool as ``execute(collect_errors=True)`` -- at most
        ``max_concurrency`` tasks at once, admitted by priority then task
        order, each with its timeout -- where each task is followed by a
        leaf that hands its outcome to the reader through a channel of
        ``buffer`` places (default: ``max_concurrency``, or the number of
        tasks).  A slow reader keeps that leaf waiting, and with it the
        task's slot, so no new task starts.  Every task runs to its end;
        an aggregator is refused.  Leaving the ``async with`` early cancels
        the tasks still running, and no task outlives it.
        """
        if self.aggregator is not None:
            msg = "ParallelOrchestrator.execute_streaming(): an aggregator gives one result; use execute()"
            raise BuildError(msg)
        checked = _task_list(tasks, "ParallelOrchestrator.execute_streaming()")
        if buffer is not None and (isinstance(buffer, bool) or not isinstance(buffer, int) or buffer < 0):
            msg = f"ParallelOrchestrator.execute_streaming(): buffer must be an int >= 0 or None, got {buffer!r}"
            raise BuildError(msg)
        return self._stream(checked, buffer, observer)

    @asynccontextmanager
    async def _stream(
        self, tasks: list[AgentTask[Any, Any]], buffer: int | None, observer: Observer | None
    ) -> AsyncIterator[Outcomes[tuple[str, Result[Any, Any]]]]:
        size = buffer if buffer is not None else (self.max_concurrency or len(tasks))
        send, receive = trio.open_memory_channel[tuple[str, Result[Any, Any]]](size)
        handed = [(collect(t.as_agent(timeout=self.timeout)) >> _hand_over(t.name, send)).named(t.name) for t in tasks]
        tree = task_pool(handed, [t.priority for t in tasks], self.max_concurrency, None).named("parallel")

        def start(nursery: trio.Nursery, crash: list[BaseException]) -> None:
            async def drive() -> None:
                try:
                    await run(tree, None, observer=observer)
                except Exception as exc:
                    keep_first_crash(crash, nursery.cancel_scope, exc)
                finally:
                    send.close()  # not aclose(): no checkpoint to lose a KeyboardInterrupt in

            nursery.start_soon(drive)

        async with serve(receive, start) as outcomes:
            yield outcomes


def _hand_over(
    name: str, send: trio.MemorySendChannel[tuple[str, Result[Any, Any]]]
) -> Agent[Result[Any, Any], None, Never]:
    """A leaf that sends ``(name, outcome)`` to the reader of ``execute_streaming``."""

    async def hand_over(outcome: Result[Any, Any]) -> Result[None, Never]:
        await send.send((name, outcome))
        return Success(None)

    return agent(hand_over)


# --------------------------------------------------------------------------
# Chains


class _Start:
    """Marks the input and output of a chain with no links yet."""


@final
@attrs.frozen
class ChainLink:
    """One step of an :class:`AgentChain`: the reference's ``ChainLink { agent, transform }``.

    ``agent`` runs on the previous step's output, passed through
    ``transform`` first when there is one; when ``agent`` fails, ``backup``
    (an agent, on the same input) or ``recover`` (a function of the error)
    takes over.  Made by ``AgentChain.then*``; read from ``chain.links``.

    >>> from combinators import pure
    >>> ChainLink(pure(str), transform=len).as_agent()
    (pure(len) >> pure(str))
    """

    agent: Agent[Any, Any, Any]
    transform: Callable[[Any], Any] | None = None
    backup: Agent[Any, Any, Any] | None = None
    recover: Callable[[Any], Any] | None = None

    @property
    def name(self) -> str:
        """The step's name: its agent's."""
        return self.agent.name

    def as_agent(self) -> Agent[Any, Any, Any]:
        """The step's tree: ``pure(transform) >> agent.fallback(backup)`` (or ``.recover(f)``)."""
        step: Agent[Any, Any, Any] = self.agent
        if self.backup is not None:
            step = step.fallback(self.backup)
        elif self.recover is not None:
            step = step.recover(self.recover)
        if self.transform is not None:
            step = pure(self.transform) >> step
        return step


@final
@attrs.frozen(init=False)
class AgentChain(Generic[_I, _O, _E]):
    """An immutable sequence of agents, each fed the previous one's output: a ``>>`` chain.

    ``AgentChain()`` is empty; every method returns a new, longer chain
    (the old one is unchanged and can be extended differently).

    >>> from combinators import pure, run_sync
    >>> chain = AgentChain().then(pure(len)).then_with_transform(pure(str), lambda n: n * 10)
    >>> chain.as_agent()
    (pure(len) >> (pure(lambda) >> pure(str)))
    >>> run_sync(chain.as_agent(), "abc")
    <Success: 30>
    """

    links: tuple[ChainLink, ...] = ()

    @overload
    def __init__(self: AgentChain[_Start, _Start, Never]) -> None: ...
    @overload
    def __init__(self: AgentChain[_I, _O, _E], links: tuple[ChainLink, ...]) -> None: ...
    def __init__(self, links: tuple[ChainLink, ...] = ()) -> None:
        self.__attrs_init__(links)

    def _add(self, link: ChainLink) -> Any:
        return AgentChain(self.links + (link,))

    @overload
    def then(
        self: AgentChain[_Start, _Start, Never], agent: Agent[_I2, _O2, _E2]
    ) -> AgentChain[_I2, _O2, _E2]: ...
    @overload
    def then(self, agent: Agent[_O, _O2, _E2]) -> AgentChain[_I, _O2, _E | _E2]: ...
    def then(self, agent: Agent[Any, Any, Any]) -> Any:
        """Append ``agent``: it runs on the previous link's output (``>>``)."""
        require_agent(agent, f"AgentChain.then() (link {len(self.links) + 1})", None)
        return self._add(ChainLink(agent))

    @overload
    def then_with_transform(
        self: AgentChain[_Start, _Start, Never], agent: Agent[_T, _O2, _E2], transform: Callable[[_I2], _T]
    ) -> AgentChain[_I2, _O2, _E2]: ...
    @overload
    def then_with_transform(
        self, agent: Agent[_T, _O2, _E2], transform: Callable[[_O], _T]
    ) -> AgentChain[_I, _O2, _E | _E2]: ...
    def then_with_transform(self, agent: Agent[Any, Any, Any], transform: Callable[[Any], Any]) -> Any:
        """Append ``agent``, fed ``transform(previous output)`` (``pure(transform) >> agent``)."""
        where = f"AgentChain.then_with_transform() (link {len(self.links) + 1})"
        require_agent(agent, where, None)
        if not callable(transform) or isinstance(transform, Agent):
            msg = f"{where}: transform must be a plain function, got {type(transform).__name__} {transform!r}"
            raise AgentTypeError(msg)
        return self._add(ChainLink(agent, transform=transform))

    @overload
    def then_with_fallback(
        self: AgentChain[_Start, _Start, Never], agent: Agent[_I2, _O2, _E2], *, fallback: Agent[_I2, _O2, _E3]
    ) -> AgentChain[_I2, _O2, _E3]: ...
    @overload
    def then_with_fallback(
        self: AgentChain[_Start, _Start, Never], agent: Agent[_I2, _O2, _E2], *, fallback: Callable[[_E2], _O2]
    ) -> AgentChain[_I2, _O2, Never]: ...
    @overload
    def then_with_fallback(
        self, agent: Agent[_O, _O2, _E2], *, fallback: Agent[_O, _O2, _E3]
    ) -> AgentChain[_I, _O2, _E | _E3]: ...
    @overload
    def then_with_fallback(
        self, agent: Agent[_O, _O2, _E2], *, fallback: Callable[[_E2], _O2]
    ) -> AgentChain[_I, _O2, _E]: ...
    def then_with_fallback(self, agent: Agent[Any, Any, Any], *, fallback: Any) -> Any:
        """Append ``agent``; if it fails, ``fallback`` takes over.

        ``fallback`` is another agent, run on the same input
        (``agent.fallback(backup)``), or a plain function from the error to
        a replacement output (``agent.recover(f)``).
        """
        where = f"AgentChain.then_with_fallback() (link {len(self.links) + 1})"
        require_agent(agent, where, None)
        if isinstance(fallback, Agent):
            return self._add(ChainLink(agent, backup=fallback))
        if callable(fallback):
            return self._add(ChainLink(agent, recover=fallback))
        msg = f"{where}: fallback must be an agent or a function error -> value, got {type(fallback).__name__} {fallback!r}"
        raise AgentTypeError(msg)

    def __len__(self) -> int:
        return len(self.links)

    def _require_links(self, where: str) -> None:
        if not self.links:
            msg = f"{where}: the chain has no links; add agents with AgentChain().then(agent)"
            raise BuildError(msg)

    def as_agent(self) -> Agent[_I, _O, _E]:
        """The chain as one agent: its links joined with ``>>``."""
        self._require_links("AgentChain.as_agent()")
        steps = [link.as_agent() for link in self.links]
        tree: Agent[Any, Any, Any] = steps[0]
        for step in steps[1:]:
            tree = tree >> step
        return tree


@final
@attrs.frozen
class StepFailure:
    """A chain step that failed: its name and error (see ``ChainOutcome``).

    >>> import trio
    >>> from combinators import fail, pure
    >>> chain = AgentChain().then_with_fallback(fail("down").named("primary"), fallback=pure(str.upper))
    >>> outcome = trio.run(SequentialOrchestrator(continue_on_failure=True).execute, chain, "ok")
    >>> outcome.failures
    (StepFailure(step='primary', error='down'),)
    """

    step: str
    error: object


@final
@attrs.frozen
class ChainOutcome(Generic[_O, _E]):
    """What ``SequentialOrchestrator(continue_on_failure=True)`` gives.

    ``result`` is the chain's final ``Result`` (the same as running the
    plain chain); ``failures`` lists every step that failed on the way, in
    order, including steps whose fallback then took over.

    >>> import trio
    >>> from combinators import fail, pure
    >>> chain = AgentChain().then(pure(len)).then(fail("no").named("check"))
    >>> trio.run(SequentialOrchestrator(continue_on_failure=True).execute, chain, "abc")
    ChainOutcome(result=<Failure: no>, failures=(StepFailure(step='check', error='no'),))
    """

    result: Result[_O, _E]
    failures: tuple[StepFailure, ...] = ()


@attrs.frozen
class _Stopped:
    error: object
    failures: tuple[StepFailure, ...]


def _identity(x: _T) -> _T:
    return x


def _first(pair: tuple[_T, Any]) -> _T:
    return pair[0]


def _attempt(a: Agent[Any, Any, Any]) -> Agent[Any, Any, Never]:
    """``(x, fails) -> ((x, fails), Result of a on x)``; never fails."""
    return pure(_identity) | (pure(_first) >> collect(a))


def _settle(name: str) -> Agent[Any, Any, Any]:
    """Success: ``(value, fails)``; failure: stop with every failure so far."""

    async def settle(p: tuple[tuple[Any, tuple[StepFailure, ...]], Result[Any, Any]]) -> Result[Any, _Stopped]:
        (_, fails), result = p
        if isinstance(result, Success):
            return Success((result.unwrap(), fails))
        error = result.failure()
        return Failure(_Stopped(error, (*fails, StepFailure(name, error))))

    return agent(settle).named(f"{name}_settle")


def _tracked(link: ChainLink) -> Agent[Any, Any, Any]:
    """One link over ``(value, failures)`` pairs, recording failures as it goes."""
    primary: Agent[Any, Any, Any] = link.agent
    if link.transform is not None:
        primary = pure(link.transform) >> primary
    name = link.name
    if link.backup is None and link.recover is None:
        return _attempt(primary) >> _settle(name)
    succeeded: Callable[[Any], bool] = lambda p: isinstance(p[1], Success)  # noqa: E731
    ok: Agent[Any, Any, Never] = pure(lambda p: (p[1].unwrap(), p[0][1])).named(f"{name}_ok")
    if link.backup is not None:
        backup: Agent[Any, Any, Any] = link.backup
        if link.transform is not None:
            backup = pure(link.transform) >> backup
        noted: Agent[Any, Any, Never] = pure(lambda p: (p[0][0], (*p[0][1], StepFailure(name, p[1].failure())))).named(f"{name}_failed")
        return _attempt(primary) >> when(succeeded, ok, noted >> _attempt(backup) >> _settle(link.backup.name))
    recover = link.recover
    assert recover is not None
    recovered: Agent[Any, Any, Never] = pure(
        lambda p: (recover(p[1].failure()), (*p[0][1], StepFailure(name, p[1].failure())))
    ).named(f"{name}_recovered")
    return _attempt(primary) >> when(succeeded, ok, recovered)


def _chain_outcome(outcome: Result[tuple[Any, tuple[StepFailure, ...]], _Stopped]) -> ChainOutcome[Any, Any]:
    if isinstance(outcome, Success):
        value, fails = outcome.unwrap()
        return ChainOutcome(Success(value), fails)
    stopped = outcome.failure()
    return ChainOutcome(Failure(stopped.error), stopped.failures)


def _check_flags(stop_on_error: bool, continue_on_failure: bool, where: str) -> None:
    if not stop_on_error and not continue_on_failure:
        msg = (
            f"{where}: stop_on_error=False needs continue_on_failure=True: a step that "
            "fails with no fallback leaves the next step nothing to run on; give that step a "
            "fallback with AgentChain.then_with_fallback()"
        )
        raise BuildError(msg)


@final
@attrs.frozen(init=False)
class SequentialOrchestrator(Generic[_Flag]):
    """Run an :class:`AgentChain` on an input: the ``>>`` tree of its links.

    * default: ``execute`` gives the chain's ``Result``; the first failure
      that no ``then_with_fallback`` handles ends the chain (``>>``).
    * ``continue_on_failure=True`` / ``continuing_on_failure()``: the same
      run, reported as a :class:`ChainOutcome` that also lists every step
      that failed on the way (a fallback took over, or the chain stopped
      there).
    * ``stop_on_error`` / ``stopping_on_error(flag)``: the reference's flag.
      A typed chain always stops at a failure nothing recovers (the next
      step has no value to run on), so ``stop_on_error=False`` is accepted
      only together with ``continue_on_failure=True``, the reference's
      error-recovery pairing.  The constructor checks this at once; a
      builder chain (which passes through the intermediate settings) is
      checked when the tree is built.

    >>> SequentialOrchestrator().stopping_on_error(False).continuing_on_failure()
    SequentialOrchestrator(stop_on_error=False, continue_on_failure=True)
    """

    stop_on_error: bool
    continue_on_failure: bool

    @overload
    def __init__(
        self: SequentialOrchestrator[Literal[False]],
        *,
        stop_on_error: bool = True,
        continue_on_failure: Literal[False] = False,
    ) -> None: ...
    @overload
    def __init__(
        self: SequentialOrchestrator[Literal[True]],
        *,
        stop_on_error: bool = True,
        continue_on_failure: Literal[True],
    ) -> None: ...
    @overload
    def __init__(
        self: SequentialOrchestrator[bool],
        *,
        stop_on_error: bool = True,
        continue_on_failure: bool,
    ) -> None: ...
    def __init__(self, *, stop_on_error: bool = True, continue_on_failure: bool = False) -> None:
        _check_flags(stop_on_error, continue_on_failure, "SequentialOrchestrator")
        self.__attrs_init__(bool(stop_on_error), bool(continue_on_failure))

    @staticmethod
    def _unchecked(stop_on_error: bool, continue_on_failure: bool) -> Any:
        new = object.__new__(SequentialOrchestrator)
        new.__attrs_init__(bool(stop_on_error), bool(continue_on_failure))
        return new

    def stopping_on_error(self, flag: bool = True) -> SequentialOrchestrator[_Flag]:
        """The same orchestrator with ``stop_on_error=flag``; the reference's ``stop_on_error(...)``."""
        new: SequentialOrchestrator[_Flag] = self._unchecked(flag, self.continue_on_failure)
        return new

    @overload
    def continuing_on_failure(self, flag: Literal[True] = True) -> SequentialOrchestrator[Literal[True]]: ...
    @overload
    def continuing_on_failure(self, flag: Literal[False]) -> SequentialOrchestrator[Literal[False]]: ...
    @overload
    def continuing_on_failure(self, flag: bool) -> SequentialOrchestrator[bool]: ...
    def continuing_on_failure(self, flag: bool = True) -> SequentialOrchestrator[Any]:
        """The same orchestrator with ``continue_on_failure=flag``; the reference's ``continue_on_failure(...)``."""
        new: SequentialOrchestrator[Any] = self._unchecked(self.stop_on_error, flag)
        return new

    @overload
    def tree(self: SequentialOrchestrator[Literal[False]], chain: AgentChain[_I, _O, _E]) -> Agent[_I, _O, _E]: ...
    @overload
    def tree(
        self: SequentialOrchestrator[Literal[True]], chain: AgentChain[_I, _O, _E]
    ) -> Agent[_I, ChainOutcome[_O, _E], Never]: ...
    @overload
    def tree(
        self: SequentialOrchestrator[bool], chain: AgentChain[_I, _O, _E]
    ) -> Agent[_I, _O | ChainOutcome[_O, _E], _E]: ...
    def tree(self, chain: AgentChain[Any, Any, Any]) -> Agent[Any, Any, Any]:
        """The agent ``execute`` runs for ``chain``.

        By default it is the chain's ``>>`` tree; with
        ``continue_on_failure`` its success value is ``execute``'s
        :class:`ChainOutcome` and it never fails.
        """
        return self._tree(chain, "SequentialOrchestrator.tree()")

    def _tree(self, chain: AgentChain[Any, Any, Any], where: str) -> Agent[Any, Any, Any]:
        _check_flags(self.stop_on_error, self.continue_on_failure, where)
        if not isinstance(chain, AgentChain):
            msg = f"SequentialOrchestrator: expected an AgentChain, got {type(chain).__name__} {chain!r}"
            raise AgentTypeError(msg)
        chain._require_links(where)
        if not self.continue_on_failure:
            return chain.as_agent().named("chain")
        steps = [_tracked(link) for link in chain.links]
        tree: Agent[Any, Any, Any] = pure(lambda x: (x, ())).named("start")
        for step in steps:
            tree = tree >> step
        return collect(tree).transform(_chain_outcome).named("chain")

    @overload
    async def execute(
        self: SequentialOrchestrator[Literal[False]],
        chain: AgentChain[_I, _O, _E],
        input: _I,
        *,
        observer: Observer | None = None,
    ) -> Result[_O, _E]: ...
    @overload
    async def execute(
        self: SequentialOrchestrator[Literal[True]],
        chain: AgentChain[_I, _O, _E],
        input: _I,
        *,
        observer: Observer | None = None,
    ) -> ChainOutcome[_O, _E]: ...
    @overload
    async def execute(
        self: SequentialOrchestrator[bool],
        chain: AgentChain[_I, _O, _E],
        input: _I,
        *,
        observer: Observer | None = None,
    ) -> Result[_O, _E] | ChainOutcome[_O, _E]: ...
    async def execute(self, chain: AgentChain[Any, Any, Any], input: Any, *, observer: Observer | None = None) -> Any:
        """``run(self.tree(chain), input)``: the chain's ``Result``, or a :class:`ChainOutcome`."""
        result = await run(self._tree(chain, "SequentialOrchestrator.execute()"), input, observer=observer)
        return result.unwrap() if self.continue_on_failure else result


# --------------------------------------------------------------------------
# Hierarchies


@final
class OrchestratorNode:
    """Constructors for the nodes of a :class:`HierarchicalOrchestrator`.

    A node is an agent; these build the usual kinds.  ``add_node`` also
    takes a chain or a list of tasks directly, and any orchestrator's
    ``tree(...)`` is a node too.

    >>> from combinators import pure, run_sync
    >>> run_sync(OrchestratorNode.parallel(pure(min), pure(max)), [3, 1, 2])
    <Success: (1, 3)>
    >>> run_sync(OrchestratorNode.tasks([AgentTask("n", pure(len), "abc")]), None)
    <Success: {'n': 3}>
    """

    @staticmethod
    def parallel(*agents: Agent[_I, Any, _E]) -> Agent[_I, tuple[Any, ...], _E]:
        """All ``agents`` on the node's input at once (``a | b | ...``): a tuple of outputs."""
        if not agents:
            msg = "OrchestratorNode.parallel(): needs at least one agent"
            raise BuildError(msg)
        for a in agents:
            require_agent(a, "OrchestratorNode.parallel()", None)
        if len(agents) == 1:
            return agents[0].transform(lambda v: (v,))
        out: Agent[_I, tuple[Any, ...], _E] = functools.reduce(operator.or_, agents)
        return out

    @staticmethod
    def tasks(tasks: Iterable[AgentTask[_O, _E]]) -> Agent[object, dict[str, _O], _E | TimedOut]:
        """Fixed-input tasks at once, fail-fast (``t1 | t2 | ...``): ``{name: output}``."""
        checked = _task_list(tasks, "OrchestratorNode.tasks()")
        if not checked:
            msg = "OrchestratorNode.tasks(): needs at least one task"
            raise BuildError(msg)
        names = tuple(t.name for t in checked)
        agents = [t.as_agent() for t in checked]
        group: Agent[object, Any, Any] = (
            agents[0].transform(lambda v: (v,)) if len(agents) == 1 else functools.reduce(operator.or_, agents)
        )
        return group.transform(lambda values: dict(zip(names, values, strict=True)))

    @staticmethod
    def sequential(chain: AgentChain[_I, _O, _E]) -> Agent[_I, _O, _E]:
        """A chain as a node (its ``>>`` tree)."""
        if not isinstance(chain, AgentChain):
            msg = f"OrchestratorNode.sequential(): expected an AgentChain, got {type(chain).__name__} {chain!r}"
            raise AgentTypeError(msg)
        return chain.as_agent()


NodeLike: TypeAlias = Agent[Any, Any, Any] | AgentChain[Any, Any, Any] | Sequence[AgentTask[Any, Any]]


def _as_node_agent(name: str, node: object) -> Agent[Any, Any, Any]:
    where = f"HierarchicalOrchestrator.add_node({name!r})"
    if isinstance(node, Agent):
        return node
    if isinstance(node, AgentChain):
        if not node.links:
            msg = f"{where}: the chain has no links; add agents with AgentChain().then(agent)"
            raise BuildError(msg)
        return node.as_agent()
    if isinstance(node, Sequence) and not isinstance(node, str) and all(isinstance(t, AgentTask) for t in node):
        return OrchestratorNode.tasks(node)
    msg = (
        f"{where}: a node must be an agent, an AgentChain, a list of AgentTask or "
        f"OrchestratorNode.parallel(...), got {type(node).__name__} {node!r}"
    )
    raise AgentTypeError(msg)


@final
@attrs.frozen(init=False)
class HierarchicalOrchestrator:
    """A DAG of named nodes run as one :class:`combinators.Workflow`.

    Immutable: ``add_node``, ``add_dependency`` and ``with_concurrency``
    return a new orchestrator (chain the calls, or rebind the variable).
    **Data follows the dependencies**: a node with no dependency gets
    ``execute``'s input; a node with one gets that node's output; a node
    with several gets a tuple of their outputs, in the order the
    dependencies were added.  A node starts as soon as its dependencies
    have succeeded.  ``max_concurrency=n`` is ``.limit(n)`` on the
    workflow: at most ``n`` leaves at once across all nodes.

    Refused when the call is made: a duplicate node name, a dependency
    naming a node not added yet, and a dependency that would close a cycle
    (``CycleError`` naming the whole cycle).

    >>> import trio
    >>> from combinators import pure
    >>> dag = (
    ...     HierarchicalOrchestrator()
    ...     .add_node("words", pure(str.split))
    ...     .add_node("count", pure(len))
    ...     .add_dependency("count", depends_on="words")
    ... )
    >>> trio.run(dag.execute, "to be or not")
    {'words': <Success: ['to', 'be', 'or', 'not']>, 'count': <Success: 4>}
    """

    max_concurrency: int | None
    on_failure: Literal["continue", "cancel"]
    _nodes: tuple[tuple[str, Agent[Any, Any, Any]], ...]
    _deps: tuple[tuple[str, str], ...]

    def __init__(
        self,
        *,
        max_concurrency: int | None = None,
        on_failure: Literal["continue", "cancel"] = "continue",
    ) -> None:
        if on_failure not in ("continue", "cancel"):
            msg = f"HierarchicalOrchestrator: on_failure must be 'continue' or 'cancel', got {on_failure!r}"
            raise BuildError(msg)
        self.__attrs_init__(_width(max_concurrency, "HierarchicalOrchestrator"), on_failure, (), ())

    def _evolve(
        self,
        nodes: tuple[tuple[str, Agent[Any, Any, Any]], ...],
        deps: tuple[tuple[str, str], ...],
        max_concurrency: int | None,
    ) -> HierarchicalOrchestrator:
        new = object.__new__(HierarchicalOrchestrator)
        new.__attrs_init__(max_concurrency, self.on_failure, nodes, deps)
        return new

    @property
    def names(self) -> tuple[str, ...]:
        """Node names in the order added."""
        return tuple(n for n, _ in self._nodes)

    def __repr__(self) -> str:
        deps = ", ".join(f"{a}<-{b}" for a, b in self._deps)
        return f"HierarchicalOrchestrator(nodes={list(self.names)!r}, dependencies=[{deps}])"

    def with_concurrency(self, max_concurrency: int | None) -> HierarchicalOrchestrator:
        """A new orchestrator running at most ``max_concurrency`` leaves at once (``None``: no limit)."""
        return self._evolve(self._nodes, self._deps, max_concurrency)

    def add_node(self, name: str, node: NodeLike) -> HierarchicalOrchestrator:
        """A new orchestrator with node ``name`` (an agent, a chain or a list of tasks)."""
        where = f"HierarchicalOrchestrator.add_node({name!r})"
        check_name(name, where)
        if name in self.names:
            msg = f"{where}: duplicate node name, the orchestrator already has a node called {name!r}"
            raise BuildError(msg)
        return self._evolve((*self._nodes, (name, _as_node_agent(name, node))), self._deps, self.max_concurrency)

    def add_dependency(self, node: str, depends_on: str) -> HierarchicalOrchestrator:
        """A new orchestrator where ``node`` runs after, and on the output of, ``depends_on``."""
        where = f"HierarchicalOrchestrator.add_dependency({node!r}, depends_on={depends_on!r})"
        names = self.names
        for role, n in (("node", node), ("depends_on", depends_on)):
            if n not in names:
                known = ", ".join(repr(x) for x in names) or "none yet"
                msg = f"{where}: {role} {n!r} is not a node of this orchestrator (nodes: {known}); add_node it first"
                raise BuildError(msg)
        if (node, depends_on) in self._deps:
            msg = f"{where}: {node!r} already depends on {depends_on!r}"
            raise BuildError(msg)
        path = self._path(node, depends_on)
        if path is not None:
            # depends_on -> node is the new edge; node -> ... -> depends_on exists.
            raise CycleError((depends_on, *path))
        return self._evolve(self._nodes, (*self._deps, (node, depends_on)), self.max_concurrency)

    def _path(self, start: str, goal: str) -> tuple[str, ...] | None:
        """A data-flow path ``start -> ... -> goal`` (dependency to dependent), or None."""
        dependents: dict[str, list[str]] = {}
        for n, on in self._deps:
            dependents.setdefault(on, []).append(n)
        came: dict[str, str | None] = {start: None}
        frontier = [start]
        while frontier:
            current = frontier.pop(0)
            if current == goal:
                out = [current]
                back = came[current]
                while back is not None:
                    out.append(back)
                    back = came[back]
                return tuple(reversed(out))
            for nxt in dependents.get(current, ()):
                if nxt not in came:
                    came[nxt] = current
                    frontier.append(nxt)
        return None

    def as_agent(self) -> Agent[Any, WorkflowResult, WorkflowFailed[object]]:
        """The agent ``execute`` runs: the workflow of the nodes, and ``.limit(n)`` with ``max_concurrency``.

        Nodes are added in dependency order, ``after=`` per dependency.  It
        succeeds with a :class:`WorkflowResult` (every node's output by
        name) or fails with a :class:`WorkflowFailed` (every node's
        outcome); ``execute`` turns either into ``{name: Result}``.  Node
        paths are ``hierarchy/<node>``, or ``hierarchy/workflow/<node>``
        under a limit.
        """
        if not self._nodes:
            msg = "HierarchicalOrchestrator: no nodes; add some with add_node(name, node)"
            raise BuildError(msg)
        deps_of: dict[str, list[str]] = {n: [] for n in self.names}
        for n, on in self._deps:
            deps_of[n].append(on)
        agents = dict(self._nodes)
        handles: dict[str, Any] = {}
        wf: Workflow[Any, Any] = Workflow.start(object)
        pending = list(self.names)
        while pending:  # add_dependency refused cycles, so every pass adds a node
            for name in pending:
                if all(d in handles for d in deps_of[name]):
                    break
            else:  # pragma: no cover - cycles are refused by add_dependency
                raise CycleError(tuple(pending))
            pending.remove(name)
            ds = deps_of[name]
            after = None if not ds else handles[ds[0]] if len(ds) == 1 else tuple(handles[d] for d in ds)
            wf, handles[name] = wf.add(name, agents[name], after=after)
        built = wf.build(on_failure=self.on_failure)
        if self.max_concurrency is not None:
            built = built.limit(self.max_concurrency)
        return built.named("hierarchy")

    async def execute(self, input: object, *, observer: Observer | None = None) -> dict[str, Result[Any, Any]]:
        """Run ``self.as_agent()`` on ``input``: ``{name: Result}`` in the order added.

        A node that ran gives its ``Success``/``Failure``; one that never
        ran gives ``Failure(NodeSkipped(because))`` (a dependency failed) or
        ``Failure(NodeCancelled(started))`` (with ``on_failure="cancel"``).
        """
        result = await run(self.as_agent(), input, observer=observer)
        value = result.unwrap() if isinstance(result, Success) else result.failure()
        by_name = _outcomes_as_results(value, self.names)
        return {name: by_name[name] for name in self.names}
