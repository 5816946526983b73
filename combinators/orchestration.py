"""The object-style orchestration API, as a thin layer over the combinators.

Users of agent SDKs know orchestrators, tasks, chains and aggregators.  This
module gives them those names, the Python way (keyword arguments, ``async``
methods, ``Result`` values), and every one of them does the same thing: it
**builds one combinator tree and runs it with** :func:`combinators.run`.
There is no second engine: each object has an ``as_agent``/``tree`` method
that returns the tree it runs, so anything an orchestrator does can be
drawn, observed, journaled or nested like any other agent.

==================================  =========================================
object style                        combinator tree it builds
==================================  =========================================
``AgentTask(name, a, x)``           ``(succeed(x) >> a).named(name)``
``task.with_priority(p)``           ``.priority(p)``
``ParallelOrchestrator(timeout=s)`` ``.timeout(s)`` on every task
``max_concurrency=n``               ``run(tree, x, max_concurrency=n)``
``collect_errors=True``             ``collect(t1 | t2 | ...)``
``collect_errors=False``            a ``Workflow`` of independent nodes,
                                    ``build(on_failure="cancel")``
``FirstSuccessfulAggregator()``     ``first_success(t1, t2, ...)``
``MajorityVoteAggregator(key)``     ``vote(t1, t2, ..., key=key)``
``AverageConfidenceAggregator()``   ``average_confidence(t1, t2, ...)``
``CustomAggregator(f)``             ``aggregate([t1, t2, ...], f')``
``execute_streaming``               ``stream(switch(...), names)``
``AgentChain().then(a).then(b)``    ``a >> b``
``then_with_transform(b, f)``       ``pure(f) >> b``
``then_with_fallback(b, fallback)`` ``b.fallback(c)`` / ``b.recover(f)``
``HierarchicalOrchestrator``        ``Workflow`` (``after=`` per dependency)
==================================  =========================================

See docs/orchestration.md for the decisions this layer takes where the
reference design is silent.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import AsyncIterator, Callable, Hashable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Generic, Literal, Never, TypeAlias, TypeVar, cast, final, overload

import attrs
from returns.result import Failure, Result, Success

from ._exceptions import AgentTypeError, AllFailed, BuildError, CycleError, NoMajority, TimedOut
from ._expr import Agent, Priority, _check_name, _require_agent, agent, pure, succeed
from ._fanout import Confident, HasConfidence, aggregate, average_confidence, collect, first_success, vote
from ._run import run
from ._workflow import NodeCancelled, NodeFailed, NodeSkipped, NodeSucceeded, Workflow, WorkflowFailed, WorkflowResult

if TYPE_CHECKING:
    from ._observe import Observer

__all__ = [
    "AgentChain",
    "AgentTask",
    "AverageConfidenceAggregator",
    "ChainOutcome",
    "CustomAggregator",
    "FirstSuccessfulAggregator",
    "HierarchicalOrchestrator",
    "MajorityVoteAggregator",
    "NodeCancelled",
    "NodeSkipped",
    "OrchestratorNode",
    "ParallelOrchestrator",
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
_Flag = TypeVar("_Flag", bound=bool)

#: The reference design's ``TaskPriority`` is the library's :class:`Priority`.
TaskPriority: TypeAlias = Priority


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
        _check_name(name, "AgentTask")
        _require_agent(agent, f"AgentTask {name!r}: agent", None)
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

    def as_agent(self, *, timeout: float | None = None) -> Agent[object, _O_co, _E_co | TimedOut]:
        """The task as an agent that ignores its input (optionally with a timeout)."""
        tree: Agent[object, _O_co, _E_co | TimedOut] = succeed(self.input) >> self.agent
        if timeout is not None:
            tree = tree.timeout(timeout)
        if self.priority is not Priority.NORMAL:
            tree = tree.priority(self.priority)
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
# Aggregators


@final
@attrs.frozen
class FirstSuccessfulAggregator:
    """Race the tasks; the first success wins and the rest are cancelled (``first_success``)."""

    def tree(self, agents: Sequence[Agent[Any, Any, Any]], names: Sequence[str]) -> Agent[Any, Any, Any]:
        return first_success(*agents)


@final
@attrs.frozen
class MajorityVoteAggregator:
    """The success value more than half of the tasks agree on (``vote``), compared by ``key``."""

    key: Callable[[Any], Hashable] | None = None

    def tree(self, agents: Sequence[Agent[Any, Any, Any]], names: Sequence[str]) -> Agent[Any, Any, Any]:
        return vote(*agents, key=self.key)


@final
@attrs.frozen
class AverageConfidenceAggregator:
    """The mean ``confidence`` of the successful outputs (``average_confidence``)."""

    def tree(self, agents: Sequence[Agent[Any, Any, Any]], names: Sequence[str]) -> Agent[Any, Any, Any]:
        return average_confidence(*agents)


@final
@attrs.frozen
class CustomAggregator(Generic[_R, _RE]):
    """``f`` turns every task's outcome, by task name, into the result (``aggregate``).

    All tasks run to their end; ``f`` receives ``{name: Result}`` in task order.
    """

    f: Callable[[dict[str, Result[Any, Any]]], Result[_R, _RE]]

    def tree(self, agents: Sequence[Agent[Any, Any, Any]], names: Sequence[str]) -> Agent[Any, _R, _RE]:
        f, keys = self.f, tuple(names)

        def by_name(results: tuple[Result[Any, Any], ...]) -> Result[_R, _RE]:
            return f(dict(zip(keys, results, strict=True)))

        by_name.__name__ = getattr(f, "__name__", "custom")
        return aggregate(list(agents), by_name)


Aggregator: TypeAlias = (
    FirstSuccessfulAggregator | MajorityVoteAggregator | AverageConfidenceAggregator | CustomAggregator[Any, Any]
)
_AggB = TypeVar("_AggB", bound=Aggregator)
_AGGREGATORS: tuple[type, ...] = (
    FirstSuccessfulAggregator,
    MajorityVoteAggregator,
    AverageConfidenceAggregator,
    CustomAggregator,
)


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


@final
class ParallelOrchestrator(Generic[_Agg]):
    """Run named tasks at once; a thin layer over ``|``, ``collect``, ``Workflow`` and the fan-outs.

    * ``max_concurrency``: at most that many leaves run at once (the run's
      limit); waiting tasks are admitted by ``priority``, then first come.
    * ``timeout``: seconds of trio time per task (``.timeout()`` on each).
    * ``collect_errors=False`` (default): fail-fast, the first failure
      cancels the tasks still running; the result still has every task:
      its ``Success``, its ``Failure``, or ``Failure(NodeCancelled(...))``.
    * ``collect_errors=True``: every task runs to its end (``collect``).
    * ``aggregator``: ``execute`` gives the aggregated ``Result`` instead.
    """

    @overload
    def __init__(
        self: ParallelOrchestrator[None],
        *,
        max_concurrency: int | None = None,
        timeout: float | None = None,
        collect_errors: bool = False,
        aggregator: None = None,
    ) -> None: ...
    @overload
    def __init__(
        self: ParallelOrchestrator[_AggB],
        *,
        max_concurrency: int | None = None,
        timeout: float | None = None,
        collect_errors: bool = False,
        aggregator: _AggB,
    ) -> None: ...
    def __init__(
        self,
        *,
        max_concurrency: int | None = None,
        timeout: float | None = None,
        collect_errors: bool = False,
        aggregator: Any = None,
    ) -> None:
        where = "ParallelOrchestrator"
        if max_concurrency is not None and (
            isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1
        ):
            msg = f"{where}: max_concurrency must be an int >= 1 or None, got {max_concurrency!r}"
            raise BuildError(msg)
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0):
            msg = f"{where}: timeout must be a number of seconds > 0 or None, got {timeout!r}"
            raise BuildError(msg)
        if aggregator is not None and not isinstance(aggregator, _AGGREGATORS):
            msg = (
                f"{where}: aggregator must be one of FirstSuccessfulAggregator, MajorityVoteAggregator, "
                f"AverageConfidenceAggregator, CustomAggregator(f); got {aggregator!r}"
            )
            raise AgentTypeError(msg)
        self.max_concurrency = max_concurrency
        self.timeout = timeout
        self.collect_errors = bool(collect_errors)
        self.aggregator: _Agg = cast("_Agg", aggregator)

    def __repr__(self) -> str:
        return (
            f"ParallelOrchestrator(max_concurrency={self.max_concurrency!r}, timeout={self.timeout!r}, "
            f"collect_errors={self.collect_errors!r}, aggregator={self.aggregator!r})"
        )

    def tree(self, tasks: Iterable[AgentTask[Any, Any]]) -> Agent[object, Any, Any]:
        """The combinator tree ``execute`` runs for these tasks (its input is ignored)."""
        checked = _task_list(tasks, "ParallelOrchestrator")
        return self._tree(checked)

    def _tree(self, tasks: list[AgentTask[Any, Any]]) -> Agent[object, Any, Any]:
        agents = [t.as_agent(timeout=self.timeout) for t in tasks]
        names = [t.name for t in tasks]
        if self.aggregator is not None:
            if not tasks:
                msg = f"ParallelOrchestrator: the aggregator {self.aggregator!r} needs at least one task"
                raise BuildError(msg)
            agg: Aggregator = self.aggregator  # type: ignore[assignment]
            return agg.tree(agents, names).named("parallel")
        if not tasks:
            msg = "ParallelOrchestrator: no tasks to run"
            raise BuildError(msg)
        if self.collect_errors:
            group = agents[0] if len(agents) == 1 else functools.reduce(operator.or_, agents)
            return collect(group).named("parallel")
        wf: Workflow[object, Any] = Workflow.start(object)
        for a in agents:
            wf, _ = wf.add(a.name, a)
        return wf.build(on_failure="cancel").named("parallel")

    @overload
    async def execute(
        self: ParallelOrchestrator[None], tasks: Iterable[AgentTask[_O, _E]]
    ) -> dict[str, Result[_O, _E | TimedOut | NodeCancelled]]: ...
    @overload
    async def execute(
        self: ParallelOrchestrator[FirstSuccessfulAggregator], tasks: Iterable[AgentTask[_O, _E]]
    ) -> Result[_O, AllFailed[_E | TimedOut]]: ...
    @overload
    async def execute(
        self: ParallelOrchestrator[MajorityVoteAggregator], tasks: Iterable[AgentTask[_O, _E]]
    ) -> Result[_O, NoMajority]: ...
    @overload
    async def execute(
        self: ParallelOrchestrator[AverageConfidenceAggregator], tasks: Iterable[AgentTask[_HC, _E]]
    ) -> Result[Confident[_HC], AllFailed[_E | TimedOut]]: ...
    @overload
    async def execute(
        self: ParallelOrchestrator[CustomAggregator[_R, _RE]], tasks: Iterable[AgentTask[Any, Any]]
    ) -> Result[_R, _RE]: ...
    async def execute(self, tasks: Iterable[AgentTask[Any, Any]]) -> Any:
        """Run every task at once: ``{name: Result}`` in task order, or the aggregated ``Result``."""
        checked = _task_list(tasks, "ParallelOrchestrator.execute()")
        if not checked and self.aggregator is None:
            return {}
        tree = self._tree(checked)
        result = await run(tree, None, max_concurrency=self.max_concurrency)
        if self.aggregator is not None:
            return result
        names = [t.name for t in checked]
        if self.collect_errors:
            outcomes = result.unwrap()
            if len(checked) == 1:
                outcomes = (outcomes,)
            return dict(zip(names, outcomes, strict=True))
        value = result.unwrap() if isinstance(result, Success) else result.failure()
        return _outcomes_as_results(value, names)

    def execute_streaming(
        self, tasks: Iterable[AgentTask[_O, _E]], *, buffer: int | None = None, observer: Observer | None = None
    ) -> _Streaming[_O, _E]:
        """``(name, Result)`` pairs as each task finishes: ``async with ... as results: async for ...``.

        Built on :func:`combinators.stream` over a ``switch`` whose branches
        are the tasks.  Tasks start in priority order (then task order), at
        most ``max_concurrency`` at once (every task at once when it is
        None).  Every task runs to its end (``collect_errors`` does not
        apply: each outcome is handed over as it comes); an aggregator is
        refused.  Leaving the ``async with`` early cancels the tasks still
        running, and no task outlives it.
        """
        if self.aggregator is not None:
            msg = "ParallelOrchestrator.execute_streaming(): an aggregator gives one result; use execute()"
            raise BuildError(msg)
        checked = _task_list(tasks, "ParallelOrchestrator.execute_streaming()")
        return _Streaming(self._stream(checked, buffer, observer))

    @asynccontextmanager
    async def _stream(
        self, tasks: list[AgentTask[Any, Any]], buffer: int | None, observer: Observer | None
    ) -> AsyncIterator[AsyncIterator[tuple[str, Result[Any, Any]]]]:
        from ._control import switch
        from ._stream import stream

        if not tasks:
            yield _empty()
            return
        branches = {t.name: t.as_agent(timeout=self.timeout) for t in tasks}
        dispatch = switch(_name_of, branches).named("tasks")
        # Higher priority first; sorted() is stable, so task order breaks ties.
        order = sorted(tasks, key=lambda t: -int(t.priority))
        width = self.max_concurrency or len(tasks)
        async with stream(
            dispatch, ((t.name, t.name) for t in order), keyed=True, max_concurrency=width, buffer=buffer, observer=observer
        ) as outcomes:
            yield outcomes


def _identity(x: _T) -> _T:
    return x


def _name_of(x: object) -> str:
    assert isinstance(x, str)
    return x


async def _empty() -> AsyncIterator[tuple[str, Result[Any, Any]]]:
    return
    yield  # pragma: no cover - makes this an async generator


@final
class _Streaming(Generic[_O, _E]):
    """What ``execute_streaming`` returns: an async context manager of ``(name, Result)`` pairs."""

    def __init__(self, cm: Any) -> None:
        self._cm = cm

    async def __aenter__(self) -> AsyncIterator[tuple[str, Result[_O, _E | TimedOut]]]:
        it: AsyncIterator[tuple[str, Result[_O, _E | TimedOut]]] = await self._cm.__aenter__()
        return it

    async def __aexit__(self, *exc: Any) -> bool | None:
        out: bool | None = await self._cm.__aexit__(*exc)
        return out


# --------------------------------------------------------------------------
# Chains


class _Start:
    """Marks the input and output of a chain with no links yet."""


@final
@attrs.frozen
class _Link:
    agent: Agent[Any, Any, Any]
    transform: Callable[[Any], Any] | None = None
    backup: Agent[Any, Any, Any] | None = None
    recover: Callable[[Any], Any] | None = None

    @property
    def name(self) -> str:
        return self.agent.name

    def as_agent(self) -> Agent[Any, Any, Any]:
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

    links: tuple[_Link, ...] = ()

    @overload
    def __init__(self: AgentChain[_Start, _Start, Never]) -> None: ...
    @overload
    def __init__(self: AgentChain[_I, _O, _E], links: tuple[_Link, ...]) -> None: ...
    def __init__(self, links: tuple[_Link, ...] = ()) -> None:
        self.__attrs_init__(links)

    def _add(self, link: _Link) -> Any:
        return AgentChain(self.links + (link,))

    @overload
    def then(
        self: AgentChain[_Start, _Start, Never], agent: Agent[_I2, _O2, _E2]
    ) -> AgentChain[_I2, _O2, _E2]: ...
    @overload
    def then(self, agent: Agent[_O, _O2, _E2]) -> AgentChain[_I, _O2, _E | _E2]: ...
    def then(self, agent: Agent[Any, Any, Any]) -> Any:
        """Append ``agent``: it runs on the previous link's output (``>>``)."""
        _require_agent(agent, f"AgentChain.then() (link {len(self.links) + 1})", None)
        return self._add(_Link(agent))

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
        _require_agent(agent, where, None)
        if not callable(transform) or isinstance(transform, Agent):
            msg = f"{where}: transform must be a plain function, got {type(transform).__name__} {transform!r}"
            raise AgentTypeError(msg)
        return self._add(_Link(agent, transform=transform))

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
        _require_agent(agent, where, None)
        if isinstance(fallback, Agent):
            return self._add(_Link(agent, backup=fallback))
        if callable(fallback):
            return self._add(_Link(agent, recover=fallback))
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
    """A chain step that failed: its name and error (see ``ChainOutcome``)."""

    step: str
    error: object


@final
@attrs.frozen
class ChainOutcome(Generic[_O, _E]):
    """What ``SequentialOrchestrator(continue_on_failure=True)`` gives.

    ``result`` is the chain's final ``Result`` (the same as running the
    plain chain); ``failures`` lists every step that failed on the way, in
    order, including steps whose fallback then took over.
    """

    result: Result[_O, _E]
    failures: tuple[StepFailure, ...] = ()


@attrs.frozen
class _Stopped:
    error: object
    failures: tuple[StepFailure, ...]


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


def _tracked(link: _Link) -> Agent[Any, Any, Any]:
    """One link over ``(value, failures)`` pairs, recording failures as it goes."""
    from ._control import when

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


@final
class SequentialOrchestrator(Generic[_Flag]):
    """Run an :class:`AgentChain` on an input: the ``>>`` tree of its links.

    * default: ``execute`` gives the chain's ``Result``; the first failure
      that no ``then_with_fallback`` handles ends the chain (``>>``).
    * ``continue_on_failure=True``: the same run, reported as a
      :class:`ChainOutcome` that also lists every step that failed on the
      way (a fallback took over, or the chain stopped there).
    * ``stop_on_error``: the reference's flag.  A typed chain always stops
      at a failure nothing recovers (the next step has no value to run
      on), so ``stop_on_error=False`` is accepted only together with
      ``continue_on_failure=True``, the reference's error-recovery pairing.
    """

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
    def __init__(self, *, stop_on_error: bool = True, continue_on_failure: bool = False) -> None:
        if not stop_on_error and not continue_on_failure:
            msg = (
                "SequentialOrchestrator: stop_on_error=False needs continue_on_failure=True: a step that "
                "fails with no fallback leaves the next step nothing to run on; give that step a "
                "fallback with AgentChain.then_with_fallback()"
            )
            raise BuildError(msg)
        self.stop_on_error = bool(stop_on_error)
        self.continue_on_failure = bool(continue_on_failure)

    def __repr__(self) -> str:
        return (
            f"SequentialOrchestrator(stop_on_error={self.stop_on_error!r}, "
            f"continue_on_failure={self.continue_on_failure!r})"
        )

    def tree(self, chain: AgentChain[Any, Any, Any]) -> Agent[Any, Any, Any]:
        """The combinator tree ``execute`` runs for ``chain``."""
        if not isinstance(chain, AgentChain):
            msg = f"SequentialOrchestrator: expected an AgentChain, got {type(chain).__name__} {chain!r}"
            raise AgentTypeError(msg)
        if not self.continue_on_failure:
            return chain.as_agent().named("chain")
        chain._require_links("SequentialOrchestrator.execute()")
        steps = [_tracked(link) for link in chain.links]
        tree: Agent[Any, Any, Any] = pure(lambda x: (x, ())).named("start")
        for step in steps:
            tree = tree >> step
        return collect(tree).named("chain")

    @overload
    async def execute(self: SequentialOrchestrator[Literal[False]], chain: AgentChain[_I, _O, _E], input: _I) -> Result[_O, _E]: ...
    @overload
    async def execute(
        self: SequentialOrchestrator[Literal[True]], chain: AgentChain[_I, _O, _E], input: _I
    ) -> ChainOutcome[_O, _E]: ...
    async def execute(self, chain: AgentChain[Any, Any, Any], input: Any) -> Any:
        """Run the chain on ``input``."""
        if isinstance(chain, AgentChain):
            chain._require_links("SequentialOrchestrator.execute()")
        tree = self.tree(chain)
        result = await run(tree, input)
        if not self.continue_on_failure:
            return result
        outcome = result.unwrap()
        if isinstance(outcome, Success):
            value, fails = outcome.unwrap()
            return ChainOutcome(Success(value), fails)
        stopped = outcome.failure()
        assert isinstance(stopped, _Stopped)
        return ChainOutcome(Failure(stopped.error), stopped.failures)


# --------------------------------------------------------------------------
# Hierarchies


@final
class OrchestratorNode:
    """Constructors for the nodes of a :class:`HierarchicalOrchestrator`.

    A node is an agent; these build the usual kinds.  ``add_node`` also
    takes a chain or a list of tasks directly.
    """

    @staticmethod
    def parallel(*agents: Agent[_I, Any, _E]) -> Agent[_I, tuple[Any, ...], _E]:
        """All ``agents`` on the node's input at once (``a | b | ...``): a tuple of outputs."""
        if not agents:
            msg = "OrchestratorNode.parallel(): needs at least one agent"
            raise BuildError(msg)
        for a in agents:
            _require_agent(a, "OrchestratorNode.parallel()", None)
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
class HierarchicalOrchestrator:
    """A DAG of named nodes run as one :class:`combinators.Workflow`.

    Immutable: ``add_node`` and ``add_dependency`` return a new orchestrator
    (chain the calls, or rebind the variable).  **Data follows the
    dependencies**: a node with no dependency gets ``execute``'s input; a
    node with one gets that node's output; a node with several gets a tuple
    of their outputs, in the order the dependencies were added.  A node
    starts as soon as its dependencies have succeeded.

    Refused when the call is made: a duplicate node name, a dependency
    naming a node not added yet, and a dependency that would close a cycle
    (``CycleError`` naming the whole cycle).
    """

    def __init__(
        self,
        *,
        max_concurrency: int | None = None,
        on_failure: Literal["continue", "cancel"] = "continue",
    ) -> None:
        if on_failure not in ("continue", "cancel"):
            msg = f"HierarchicalOrchestrator: on_failure must be 'continue' or 'cancel', got {on_failure!r}"
            raise BuildError(msg)
        if max_concurrency is not None and (
            isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1
        ):
            msg = f"HierarchicalOrchestrator: max_concurrency must be an int >= 1 or None, got {max_concurrency!r}"
            raise BuildError(msg)
        self.max_concurrency = max_concurrency
        self.on_failure: Literal["continue", "cancel"] = on_failure
        self._nodes: tuple[tuple[str, Agent[Any, Any, Any]], ...] = ()
        self._deps: tuple[tuple[str, str], ...] = ()

    def _evolve(
        self, nodes: tuple[tuple[str, Agent[Any, Any, Any]], ...], deps: tuple[tuple[str, str], ...]
    ) -> HierarchicalOrchestrator:
        new = HierarchicalOrchestrator(max_concurrency=self.max_concurrency, on_failure=self.on_failure)
        new._nodes, new._deps = nodes, deps
        return new

    @property
    def names(self) -> tuple[str, ...]:
        """Node names in the order added."""
        return tuple(n for n, _ in self._nodes)

    def __repr__(self) -> str:
        deps = ", ".join(f"{a}<-{b}" for a, b in self._deps)
        return f"HierarchicalOrchestrator(nodes={list(self.names)!r}, dependencies=[{deps}])"

    def add_node(self, name: str, node: NodeLike) -> HierarchicalOrchestrator:
        """A new orchestrator with node ``name`` (an agent, a chain or a list of tasks)."""
        where = f"HierarchicalOrchestrator.add_node({name!r})"
        _check_name(name, where)
        if name in self.names:
            msg = f"{where}: duplicate node name, the orchestrator already has a node called {name!r}"
            raise BuildError(msg)
        return self._evolve((*self._nodes, (name, _as_node_agent(name, node))), self._deps)

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
        return self._evolve(self._nodes, (*self._deps, (node, depends_on)))

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
        """The workflow ``execute`` runs: nodes added in dependency order, ``after=`` per dependency."""
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
        return wf.build(on_failure=self.on_failure).named("hierarchy")

    async def execute(self, input: object, *, observer: Observer | None = None) -> dict[str, Result[Any, Any]]:
        """Run every node: ``{name: Result}`` in the order added.

        A node that ran gives its ``Success``/``Failure``; one that never
        ran gives ``Failure(NodeSkipped(because))`` (a dependency failed) or
        ``Failure(NodeCancelled(started))`` (with ``on_failure="cancel"``).
        """
        result = await run(self.as_agent(), input, max_concurrency=self.max_concurrency, observer=observer)
        value = result.unwrap() if isinstance(result, Success) else result.failure()
        by_name = _outcomes_as_results(value, self.names)
        return {name: by_name[name] for name in self.names}

