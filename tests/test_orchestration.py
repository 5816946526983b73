"""The object-style API: each feature gives the same result, in the same trio
time, as the combinator tree it stands for; bad input is refused clearly."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from returns.result import Failure, Result, Success

from combinators import (
    Agent,
    AllFailed,
    BuildError,
    Confident,
    CycleError,
    EventKind,
    NoMajority,
    NodeFailed,
    Priority,
    Recorder,
    TimedOut,
    Usage,
    Workflow,
    agent,
    aggregate,
    average_confidence,
    collect,
    estimate,
    fail,
    first_success,
    pure,
    run,
    stream,
    succeed,
    switch,
    vote,
)
from combinators.orchestration import (
    AgentChain,
    AgentTask,
    AverageConfidenceAggregator,
    ChainLink,
    ChainOutcome,
    CustomAggregator,
    FirstSuccessfulAggregator,
    HierarchicalOrchestrator,
    MajorityVoteAggregator,
    NodeCancelled,
    NodeSkipped,
    OrchestratorNode,
    ParallelOrchestrator,
    SequentialOrchestrator,
    StepFailure,
    TaskPriority,
)


def slow(name: str, seconds: float, *, error: str | None = None, log: list[str] | None = None) -> Agent[object, str, str]:
    """An agent that takes ``seconds`` of trio time and succeeds with ``f"{name}({x})"``."""

    async def work(x: object) -> Result[str, str]:
        if log is not None:
            log.append(name)
        await trio.sleep(seconds)
        if error is not None:
            return Failure(error)
        return Success(f"{name}({x})")

    return agent(work).named(name)


async def timed(coro: Any) -> tuple[Any, float]:
    start = trio.current_time()
    out = await coro
    return out, trio.current_time() - start


TASKS = [
    AgentTask("a", slow("a", 3), 1),
    AgentTask("b", slow("b", 1, error="b broke"), 2),
    AgentTask("c", slow("c", 2), 3),
]


# -- ParallelOrchestrator ------------------------------------------------------


async def test_parallel_collect_errors_is_collect_of_a_group(autojump_clock: trio.testing.MockClock) -> None:
    got, took = await timed(ParallelOrchestrator(collect_errors=True).execute(TASKS))
    tree = collect((succeed(1) >> slow("a", 3)) | (succeed(2) >> slow("b", 1, error="b broke")) | (succeed(3) >> slow("c", 2)))
    want, want_took = await timed(run(tree, None))
    assert got == dict(zip("abc", want.unwrap(), strict=True))
    assert got == {"a": Success("a(1)"), "b": Failure("b broke"), "c": Success("c(3)")}
    assert took == want_took == 3


async def test_parallel_fail_fast_is_a_cancelling_workflow(autojump_clock: trio.testing.MockClock) -> None:
    got, took = await timed(ParallelOrchestrator().execute(TASKS))
    wf: Workflow[object, object] = Workflow.start(object)
    for t in TASKS:
        wf, _ = wf.add(t.name, succeed(t.input) >> t.agent)
    want, want_took = await timed(run(wf.build(on_failure="cancel"), None))
    assert took == want_took == 1  # the first failure, at 1 s, cancels the rest
    assert got == {"a": Failure(NodeCancelled(started=True)), "b": Failure("b broke"), "c": Failure(NodeCancelled(started=True))}
    assert isinstance(want, Failure)
    assert want.failure().first == "b"
    assert want.failure().outcomes == {"a": NodeCancelled(started=True), "b": NodeFailed("b broke"), "c": NodeCancelled(started=True)}


async def test_parallel_all_succeed_gives_every_value(autojump_clock: trio.testing.MockClock) -> None:
    tasks = [AgentTask(n, slow(n, d), n) for n, d in (("x", 2), ("y", 5))]
    got, took = await timed(ParallelOrchestrator().execute(tasks))
    assert got == {"x": Success("x(x)"), "y": Success("y(y)")}
    assert took == 5


async def test_parallel_timeout_is_a_timeout_per_task(autojump_clock: trio.testing.MockClock) -> None:
    got, took = await timed(ParallelOrchestrator(timeout=2.5, collect_errors=True).execute(TASKS))
    want, want_took = await timed(run((succeed(1) >> slow("a", 3)).timeout(2.5).named("a"), None))
    assert took == want_took == 2.5
    assert isinstance(want.failure(), TimedOut)
    timed_out = got["a"].failure()
    assert isinstance(timed_out, TimedOut) and timed_out.seconds == 2.5
    assert timed_out.path.startswith("parallel/") and timed_out.path.endswith("/a")  # the task's own node
    assert got["c"] == Success("c(3)")


async def test_parallel_max_concurrency_limits_tasks_not_leaves(autojump_clock: trio.testing.MockClock) -> None:
    # One leaf per task: the same as a limit on leaves, list scheduling in priority then task order.
    got, took = await timed(ParallelOrchestrator(max_concurrency=1, collect_errors=True).execute(TASKS))
    tree = collect((succeed(1) >> slow("a", 3)) | (succeed(2) >> slow("b", 1, error="b broke")) | (succeed(3) >> slow("c", 2)))
    want, want_took = await timed(run(tree, None, max_concurrency=1))
    assert took == want_took == 6  # one at a time
    assert list(got.values()) == list(want.unwrap())
    # A task that is `a | b` holds one slot, however many leaves it runs.
    pairs = [AgentTask(n, slow(f"{n}1", 1) | slow(f"{n}2", 1), n) for n in "xyz"]
    for width, expected in ((1, 3), (2, 2), (3, 1)):
        got_pairs, took = await timed(ParallelOrchestrator(max_concurrency=width).execute(pairs))
        assert took == expected, width  # a limit on leaves would take 6, 3 and 2 s
        assert got_pairs["y"] == Success(("y1(y)", "y2(y)"))


async def test_at_most_max_concurrency_tasks_are_in_flight(autojump_clock: trio.testing.MockClock) -> None:
    running: list[int] = [0]
    peak: list[int] = [0]

    def counted(name: str, seconds: float) -> Agent[object, str, str]:
        async def enter(x: object) -> Result[object, str]:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            return Success(x)

        async def leave(x: object) -> Result[str, str]:
            running[0] -= 1
            return Success(name)

        # three leaves at once inside one task: still one task in flight
        return agent(enter) >> (slow("p", seconds) | slow("q", seconds) | slow("r", seconds)) >> agent(leave)

    tasks = [AgentTask(f"t{i}", counted(f"t{i}", 1 + i % 3), i) for i in range(7)]
    _, took = await timed(ParallelOrchestrator(max_concurrency=2).execute(tasks))
    assert peak == [2]
    assert took == 7  # durations 1,2,3,1,2,3,1 on two slots, in task order


async def test_tree_is_what_execute_runs_limit_and_timeout_included(autojump_clock: trio.testing.MockClock) -> None:
    tasks = [AgentTask(n, slow(n, 1), n) for n in "abc"]
    orchestrator = ParallelOrchestrator(max_concurrency=1, timeout=1.5)
    got, took = await timed(orchestrator.execute(tasks))
    ran, ran_took = await timed(run(orchestrator.tree(tasks), None))
    assert took == ran_took == 3  # one at a time, as execute; no task timed out
    assert ran == Success(got) == Success({"a": Success("a(a)"), "b": Success("b(b)"), "c": Success("c(c)")})
    # Nested in a bigger tree it behaves the same: its value is execute's dict.
    nested, nested_took = await timed(run(succeed("go") >> orchestrator.tree(tasks) >> pure(len), None))
    assert (nested, nested_took) == (Success(3), 3)
    # The timeout is in the tree too, per task.
    short = ParallelOrchestrator(max_concurrency=1, timeout=0.5, collect_errors=True).tree(tasks)
    outcome, short_took = await timed(run(short, None))
    assert short_took == 1.5
    assert all(isinstance(r.failure(), TimedOut) for r in outcome.unwrap().values())


async def test_hierarchy_as_agent_keeps_max_concurrency(autojump_clock: trio.testing.MockClock) -> None:
    h = HierarchicalOrchestrator(max_concurrency=1).add_node("a", slow("a", 1)).add_node("b", slow("b", 1))
    got, took = await timed(h.execute("x"))
    ran, ran_took = await timed(run(h.as_agent(), "x"))
    assert took == ran_took == 2
    assert got == {"a": Success("a(x)"), "b": Success("b(x)")}
    assert ran.unwrap().as_dict() == {"a": "a(x)", "b": "b(x)"}
    unlimited = h.with_concurrency(None)
    assert unlimited.names == h.names and h.max_concurrency == 1
    _, free_took = await timed(run(unlimited.as_agent(), "x"))
    assert free_took == 1


async def test_timeout_counts_only_the_tasks_own_run(autojump_clock: trio.testing.MockClock) -> None:
    tasks = [AgentTask(n, slow(n, 1), n) for n in "abcd"]
    got, took = await timed(ParallelOrchestrator(max_concurrency=1, timeout=1.5).execute(tasks))
    assert took == 4  # d waited 3 s for its slot and did not time out
    assert all(isinstance(r, Success) for r in got.values()), got
    slow_one = [AgentTask("long", slow("long", 5), 0), AgentTask("after", slow("after", 1), 0)]
    got, took = await timed(ParallelOrchestrator(max_concurrency=1, timeout=2, collect_errors=True).execute(slow_one))
    assert took == 3
    timed_out = got["long"].failure()
    assert isinstance(timed_out, TimedOut) and timed_out.path == "parallel/long"
    assert got["after"] == Success("after(0)")


async def test_tasks_that_never_started_are_cancelled_unstarted(autojump_clock: trio.testing.MockClock) -> None:
    tasks = [
        AgentTask("first", slow("first", 2), 0),
        AgentTask("bad", slow("bad", 1, error="x"), 0),
        AgentTask("later", slow("later", 1), 0),
        AgentTask("last", slow("last", 1), 0),
    ]
    got, took = await timed(ParallelOrchestrator(max_concurrency=2).execute(tasks))
    assert took == 1
    assert got == {
        "first": Failure(NodeCancelled(started=True)),  # running when bad failed
        "bad": Failure("x"),
        "later": Failure(NodeCancelled(started=False)),  # still waiting for a slot
        "last": Failure(NodeCancelled(started=False)),
    }


async def test_priorities_order_admission_under_a_limit(autojump_clock: trio.testing.MockClock) -> None:
    log: list[str] = []
    levels = [Priority.LOW, Priority.NORMAL, Priority.HIGH, Priority.CRITICAL, Priority.NORMAL, Priority.HIGH]
    tasks = [
        AgentTask(f"t{i}", slow(f"t{i}", 1, log=log), i).with_priority(p) for i, p in enumerate(levels)
    ]
    assert tasks[3].priority is TaskPriority.CRITICAL
    got = await ParallelOrchestrator(max_concurrency=1, collect_errors=True).execute(tasks)
    assert log == ["t3", "t2", "t5", "t1", "t4", "t0"]  # priority, then task order; even the first
    assert list(got) == [t.name for t in tasks]  # results stay in task order


def test_admission_and_fail_fast_are_deterministic() -> None:
    """trio starts tasks of one instant in a random order; admission must not depend on it."""

    def once() -> tuple[list[str], dict[str, Result[str, Any]]]:
        log: list[str] = []
        levels = [Priority.LOW, Priority.NORMAL, Priority.HIGH, Priority.CRITICAL]
        tasks = [
            AgentTask(f"t{i}", slow(f"t{i}", 1, error=f"e{i}" if i < 2 else None, log=log), i, priority=p)
            for i, p in enumerate(levels)
        ]

        async def main() -> dict[str, Result[str, Any]]:
            return await ParallelOrchestrator(max_concurrency=1).execute(tasks)

        return log, trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))

    runs = [once() for _ in range(30)]
    for log, got in runs:
        assert log == ["t3", "t2", "t1"]  # CRITICAL, HIGH, then NORMAL fails and stops the rest
        assert got == {
            "t0": Failure(NodeCancelled(started=False)),
            "t1": Failure("e1"),
            "t2": Success("t2(2)"),
            "t3": Success("t3(3)"),
        }


async def test_aggregators_are_the_fanout_combinators(autojump_clock: trio.testing.MockClock) -> None:
    from examples.market import Analysis

    def analysis(name: str, seconds: float, signal: Any, confidence: float) -> Agent[object, Analysis, str]:
        async def work(x: object) -> Result[Analysis, str]:
            await trio.sleep(seconds)
            return Success(Analysis("AAPL", name, signal, 0.0, confidence))

        return agent(work).named(name)

    agents = [analysis("v", 1, "buy", 0.5), analysis("q", 2, "buy", 0.7), analysis("t", 3, "sell", 0.9)]
    tasks = [AgentTask(a.name, a, None) for a in agents]
    trees = [succeed(None) >> a for a in agents]

    got, took = await timed(ParallelOrchestrator(aggregator=FirstSuccessfulAggregator()).execute(tasks))
    want, want_took = await timed(run(first_success(*trees), None))
    assert (got, took) == (want, want_took) and took == 1

    key = MajorityVoteAggregator(key=lambda a: a.signal)
    got, took = await timed(ParallelOrchestrator(aggregator=key).execute(tasks))
    want, want_took = await timed(run(vote(*trees, key=lambda a: a.signal), None))
    assert (got, took) == (want, want_took) and took == 2  # two "buy" of three decide it

    got, took = await timed(ParallelOrchestrator(aggregator=AverageConfidenceAggregator()).execute(tasks))
    want, want_took = await timed(run(average_confidence(*trees), None))
    assert (got, took) == (want, want_took) and took == 3
    assert isinstance(got.unwrap(), Confident) and got.unwrap().mean == pytest.approx(0.7)

    def count(results: dict[str, Result[Any, Any]]) -> Result[str, Never_]:
        return Success(",".join(n for n, r in results.items() if isinstance(r, Success)))

    got, took = await timed(ParallelOrchestrator(aggregator=CustomAggregator(count)).execute(tasks))
    want, want_took = await timed(
        run(aggregate(trees, lambda rs: Success(",".join(n for n, r in zip("vqt", rs, strict=True) if isinstance(r, Success)))), None)
    )
    assert (got, took) == (want, want_took) == (Success("v,q,t"), 3)


Never_ = str  # an error type for the custom aggregator above


async def test_aggregator_failures(autojump_clock: trio.testing.MockClock) -> None:
    tasks = [AgentTask("x", fail("e1"), 0), AgentTask("y", slow("y", 1, error="e2"), 0)]
    got = await ParallelOrchestrator(aggregator=FirstSuccessfulAggregator()).execute(tasks)
    assert got == Failure(AllFailed(("e1", "e2")))
    voted = await ParallelOrchestrator(aggregator=MajorityVoteAggregator()).execute(tasks)
    assert isinstance(voted.failure(), NoMajority)


async def test_aggregators_under_a_limit_run_tasks_through_the_pool(autojump_clock: trio.testing.MockClock) -> None:
    log: list[str] = []
    tasks = [
        AgentTask("down", slow("down", 1, error="503", log=log), 0),
        AgentTask("mirror", slow("mirror", 1, log=log), 0),
        AgentTask("spare", slow("spare", 1, log=log), 0),
    ]
    first = ParallelOrchestrator(max_concurrency=1, aggregator=FirstSuccessfulAggregator())
    got, took = await timed(first.execute(tasks))
    assert (got, took) == (Success("mirror(0)"), 2)
    assert log == ["down", "mirror"]  # the first success stops the pool: spare never starts
    ran, ran_took = await timed(run(first.tree(tasks), None))
    assert (ran, ran_took) == (got, took)
    log.clear()
    all_down = [AgentTask(n, slow(n, 1, error=f"{n} down"), 0) for n in "xy"]
    assert await first.execute(all_down) == Failure(AllFailed(("x down", "y down")))

    voters = [AgentTask(n, slow(n, 1, log=log), 0).with_priority(p) for n, p in (("a", Priority.LOW), ("b", Priority.HIGH))]
    vote_of = ParallelOrchestrator(max_concurrency=1, aggregator=MajorityVoteAggregator(key=len))
    got_vote, took = await timed(vote_of.execute(voters))
    assert (got_vote, took) == (Success("a(0)"), 2)  # both say len 4; the first voter in task order wins
    assert log == ["b", "a"]


class CountSuccesses:
    """A user's aggregator: a plain class with ``aggregate``, no base class."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Result[Any, Any]]] = []

    def aggregate(self, results: dict[str, Result[Any, Any]]) -> Result[int, str]:
        self.seen.append(results)
        ok = sum(isinstance(r, Success) for r in results.values())
        return Success(ok) if ok else Failure("none succeeded")


async def test_a_result_aggregator_gets_every_outcome_by_name(autojump_clock: trio.testing.MockClock) -> None:
    counter = CountSuccesses()
    orchestrator = ParallelOrchestrator().with_aggregator(counter)
    got, took = await timed(orchestrator.execute(TASKS))
    assert (got, took) == (Success(2), 3)  # every task ran to its end
    assert counter.seen == [{"a": Success("a(1)"), "b": Failure("b broke"), "c": Success("c(3)")}]
    assert list(counter.seen[0]) == ["a", "b", "c"]  # task order, not finishing order
    # the same as aggregate() over the task trees, in result and time
    trees = [succeed(t.input) >> t.agent for t in TASKS]
    want, want_took = await timed(run(aggregate(trees, lambda rs: Success(sum(isinstance(r, Success) for r in rs))), None))
    assert (want, want_took) == (got, took)
    limited, limited_took = await timed(orchestrator.with_concurrency(1).execute(TASKS))
    assert (limited, limited_took) == (Success(2), 6)
    nobody = [AgentTask("x", fail("no"), 0)]
    assert await ParallelOrchestrator(aggregator=CountSuccesses()).execute(nobody) == Failure("none succeeded")


def test_builders_give_new_orchestrators() -> None:
    base = ParallelOrchestrator()
    built = base.with_concurrency(5).with_timeout(timedelta(seconds=30)).collecting_errors()
    assert built == ParallelOrchestrator(max_concurrency=5, timeout=30, collect_errors=True)
    assert base == ParallelOrchestrator()  # unchanged
    assert built.collecting_errors(False).collect_errors is False
    assert built.with_timeout(None).timeout is None and built.with_concurrency(None).max_concurrency is None
    first = built.with_aggregator(FirstSuccessfulAggregator())
    assert first.aggregator == FirstSuccessfulAggregator() and first.max_concurrency == 5
    assert first.with_aggregator(None) == built
    with pytest.raises(BuildError, match="max_concurrency"):
        base.with_concurrency(0)
    with pytest.raises(BuildError, match="timeout"):
        base.with_timeout(timedelta(0))
    with pytest.raises(TypeError, match="aggregate"):
        base.with_aggregator(object())  # type: ignore[call-overload]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        base.max_concurrency = 3  # type: ignore[misc]


async def test_timedelta_timeouts_are_seconds(autojump_clock: trio.testing.MockClock) -> None:
    by_delta = await ParallelOrchestrator(timeout=timedelta(milliseconds=2500), collect_errors=True).execute(TASKS)
    by_float = await ParallelOrchestrator(timeout=2.5, collect_errors=True).execute(TASKS)
    assert by_delta == by_float
    assert ParallelOrchestrator(timeout=timedelta(minutes=1)).timeout == 60.0
    assert TASKS[0].as_agent(timeout=timedelta(seconds=2)) == TASKS[0].as_agent(timeout=2)
    with pytest.raises(BuildError, match="timeout"):
        ParallelOrchestrator(timeout=timedelta(seconds=-1))


async def test_execute_takes_an_observer(autojump_clock: trio.testing.MockClock) -> None:
    seen = Recorder()
    await ParallelOrchestrator(max_concurrency=1).execute(TASKS, observer=seen)
    paths = {e.path for e in seen.events}
    assert {"parallel", "parallel/a", "parallel/b"} <= paths
    assert "parallel/c" not in paths  # one at a time: b failed before c's turn, so c never started
    assert not [e for e in seen.events if e.kind is EventKind.CANCELLED]
    chained = Recorder()
    chain = AgentChain().then(slow("one", 1)).then(slow("two", 1))
    assert await SequentialOrchestrator().execute(chain, 0, observer=chained) == Success("two(one(0))")
    assert {"chain", "chain/one", "chain/two"} <= {e.path for e in chained.events}


async def test_streaming_yields_in_finishing_order_like_stream(autojump_clock: trio.testing.MockClock) -> None:
    seen: list[tuple[str, Result[str, Any], float]] = []
    start = trio.current_time()
    async with ParallelOrchestrator(collect_errors=True).execute_streaming(TASKS) as results:
        async for name, result in results:
            seen.append((name, result, trio.current_time() - start))
    assert seen == [("b", Failure("b broke"), 1), ("c", Success("c(3)"), 2), ("a", Success("a(1)"), 3)]
    # the tree it stands for: stream() over a switch whose branches are the tasks
    branches = {t.name: (succeed(t.input) >> t.agent).named(t.name) for t in TASKS}
    start = trio.current_time()
    plain: list[tuple[str, Result[str, Any], float]] = []
    async with stream(switch(str, branches), [(t.name, t.name) for t in TASKS], keyed=True) as outcomes:
        async for key, outcome in outcomes:
            plain.append((key, outcome, trio.current_time() - start))
    assert plain == seen


async def test_streaming_respects_limit_and_priority(autojump_clock: trio.testing.MockClock) -> None:
    log: list[str] = []
    tasks = [
        AgentTask("low", slow("low", 1, log=log), 0, priority=Priority.LOW),
        AgentTask("crit", slow("crit", 1, log=log), 0, priority=Priority.CRITICAL),
        AgentTask("norm", slow("norm", 1, log=log), 0),
    ]
    finished = []
    async with ParallelOrchestrator(max_concurrency=1).execute_streaming(tasks) as results:
        async for name, _ in results:
            finished.append((name, trio.current_time()))
    assert log == ["crit", "norm", "low"]
    assert [t for _, t in finished] == [finished[0][1], finished[0][1] + 1, finished[0][1] + 2]


async def test_streaming_limits_tasks_not_leaves_and_times_each_from_its_start(
    autojump_clock: trio.testing.MockClock,
) -> None:
    pairs = [AgentTask(n, slow(f"{n}1", 1) | slow(f"{n}2", 1), n) for n in "xyz"]
    start = trio.current_time()
    finished = []
    async with ParallelOrchestrator(max_concurrency=1, timeout=1.5).execute_streaming(pairs) as results:
        async for name, result in results:
            finished.append((name, result, trio.current_time() - start))
    assert finished == [
        ("x", Success(("x1(x)", "x2(x)")), 1),
        ("y", Success(("y1(y)", "y2(y)")), 2),
        ("z", Success(("z1(z)", "z2(z)")), 3),
    ]


async def test_streaming_a_slow_reader_holds_back_new_tasks(autojump_clock: trio.testing.MockClock) -> None:
    log: list[str] = []
    tasks = [AgentTask(f"t{i}", slow(f"t{i}", 1, log=log), i) for i in range(4)]
    async with ParallelOrchestrator(max_concurrency=1).execute_streaming(tasks, buffer=0) as results:
        await trio.sleep(10)  # nobody reads: t0 finished at 1 s and waits to be handed over
        assert log == ["t0"]
        names = [name async for name, _ in results]
    assert names == ["t0", "t1", "t2", "t3"]


async def test_streaming_raises_a_bug_as_itself(autojump_clock: trio.testing.MockClock) -> None:
    async def broken(x: object) -> Result[str, str]:
        await trio.sleep(1)
        raise RuntimeError("bug in an agent")

    tasks = [AgentTask("ok", slow("ok", 5), 0), AgentTask("broken", agent(broken), 0)]
    with pytest.raises(RuntimeError, match="bug in an agent"):
        async with ParallelOrchestrator().execute_streaming(tasks) as results:
            async for _ in results:
                pass


async def test_streaming_stopped_early_leaves_nothing_running(autojump_clock: trio.testing.MockClock) -> None:
    done: list[str] = []

    def tracked(name: str, seconds: float) -> Agent[object, str, str]:
        async def work(x: object) -> Result[str, str]:
            await trio.sleep(seconds)
            done.append(name)
            return Success(name)

        return agent(work).named(name)

    tasks = [AgentTask(f"t{i}", tracked(f"t{i}", i + 1), i) for i in range(5)]
    before = trio.lowlevel.current_statistics().tasks_living
    async with ParallelOrchestrator().execute_streaming(tasks) as results:
        async for name, _ in results:
            assert name == "t0"
            break
    await trio.sleep(10)
    assert done == ["t0"]
    assert trio.lowlevel.current_statistics().tasks_living == before


async def test_parallel_edge_cases(autojump_clock: trio.testing.MockClock) -> None:
    one = [AgentTask("only", slow("only", 1), 7)]
    assert await ParallelOrchestrator(collect_errors=True).execute(one) == {"only": Success("only(7)")}
    assert await ParallelOrchestrator().execute(one) == {"only": Success("only(7)")}
    assert await ParallelOrchestrator().execute([]) == {}
    with pytest.raises(BuildError, match="needs at least one task"):
        await ParallelOrchestrator(aggregator=FirstSuccessfulAggregator()).execute([])
    with pytest.raises(BuildError, match="an aggregator gives one result"):
        ParallelOrchestrator(aggregator=FirstSuccessfulAggregator()).execute_streaming(one)
    none: list[AgentTask[str, str]] = []
    async with ParallelOrchestrator().execute_streaming(none) as results:
        assert [r async for r in results] == []


def test_the_task_pool_prints_its_fields_by_their_names() -> None:
    tasks = [AgentTask(n, pure(str), n) for n in "ab"]
    fail_fast = ParallelOrchestrator(max_concurrency=2).tree(tasks)
    fields = set(attrs.fields_dict(type(fail_fast)))
    assert {"max_concurrency", "stop_at"} <= fields
    assert repr(fail_fast).endswith(", max_concurrency=2, stop_at='failure').named('parallel')")
    assert repr(ParallelOrchestrator(collect_errors=True).tree(tasks)).endswith("'b')).named('parallel')")


def test_estimate_bounds_an_orchestrator_tree_like_a_group() -> None:
    """The pool is known to estimate (every task at most once), though it lives above the core."""
    ask = pure(str.upper).costs(Usage(calls=1, cost=0.25))
    tasks = [AgentTask(n, ask, n) for n in "abc"]
    for orchestrator in (ParallelOrchestrator(), ParallelOrchestrator(max_concurrency=1, collect_errors=True)):
        est = estimate(orchestrator.tree(tasks), None)
        assert est.unbounded == ()
        assert est.most == est.happy == Usage(calls=3, cost=0.75)
    first = ParallelOrchestrator(max_concurrency=2, aggregator=FirstSuccessfulAggregator())
    assert estimate(first.tree(tasks), None).most == Usage(calls=3, cost=0.75)


def test_the_layer_takes_only_public_names_and_the_internal_api() -> None:
    """orchestration builds from what users import, plus ``_internal``; no core module imports it."""
    import ast

    allowed = {None, "_internal", "_orchestration_pool"}  # None: ``from . import ...``
    for name in ("orchestration.py", "_orchestration_pool.py"):
        tree = ast.parse((ROOT / "combinators" / name).read_text())
        relative = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 1}
        assert relative <= allowed, (name, relative - allowed)
    for path in (ROOT / "combinators").glob("_*.py"):
        if path.name in ("_orchestration_pool.py", "_internal.py"):
            continue
        modules = [node.module or "" for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.ImportFrom)]
        assert not [m for m in modules if m.lstrip("_").startswith("orchestration")], path.name
    fanout = ast.parse((ROOT / "combinators" / "_fanout.py").read_text())
    assert "_workflow" not in {node.module for node in ast.walk(fanout) if isinstance(node, ast.ImportFrom)}


# -- SequentialOrchestrator ------------------------------------------------------


async def test_chain_is_a_sequence(autojump_clock: trio.testing.MockClock) -> None:
    a, b, c = slow("a", 1), slow("b", 2), slow("c", 3)
    chain = AgentChain().then(a).then_with_transform(b, str.upper).then(c)
    got, took = await timed(SequentialOrchestrator().execute(chain, "x"))
    want, want_took = await timed(run(a >> (pure(str.upper) >> b) >> c, "x"))
    assert (got, took) == (want, want_took) == (Success("c(b(A(X)))"), 6)
    assert chain.as_agent() == a >> (pure(str.upper) >> b) >> c


async def test_chain_stops_at_first_failure(autojump_clock: trio.testing.MockClock) -> None:
    chain = AgentChain().then(slow("a", 1)).then(slow("b", 2, error="no")).then(slow("c", 3))
    got, took = await timed(SequentialOrchestrator().execute(chain, "x"))
    assert (got, took) == (Failure("no"), 3)


async def test_chain_is_immutable() -> None:
    base = AgentChain().then(pure(len))
    longer = base.then(pure(str))
    assert len(base) == 1 and len(longer) == 2


async def test_then_with_fallback_agent_is_fallback(autojump_clock: trio.testing.MockClock) -> None:
    primary, backup = slow("primary", 2, error="down"), slow("backup", 1)
    chain = AgentChain().then_with_fallback(primary, fallback=backup).then(slow("recommend", 1))
    got, took = await timed(SequentialOrchestrator().execute(chain, "AAPL"))
    want, want_took = await timed(run(primary.fallback(backup) >> slow("recommend", 1), "AAPL"))
    assert (got, took) == (want, want_took) == (Success("recommend(backup(AAPL))"), 4)


async def test_then_with_fallback_function_is_recover(autojump_clock: trio.testing.MockClock) -> None:
    primary = slow("primary", 2, error="down")
    chain = AgentChain().then_with_fallback(primary, fallback=lambda e: f"default because {e}")
    got, took = await timed(SequentialOrchestrator().execute(chain, "AAPL"))
    want, want_took = await timed(run(primary.recover(lambda e: f"default because {e}"), "AAPL"))
    assert (got, took) == (want, want_took) == (Success("default because down"), 2)


async def test_continue_on_failure_reports_the_failed_steps(autojump_clock: trio.testing.MockClock) -> None:
    primary, backup, last = slow("primary", 2, error="down"), slow("backup", 1), slow("recommend", 1)
    chain = (
        AgentChain()
        .then_with_fallback(primary, fallback=backup)
        .then_with_fallback(slow("score", 1, error="bad"), fallback=lambda e: "neutral")
        .then(last)
    )
    orchestrator = SequentialOrchestrator(stop_on_error=False, continue_on_failure=True)
    got, took = await timed(orchestrator.execute(chain, "AAPL"))
    plain, plain_took = await timed(SequentialOrchestrator().execute(chain, "AAPL"))
    assert took == plain_took == 5
    assert got == ChainOutcome(plain, (StepFailure("primary", "down"), StepFailure("score", "bad")))
    assert got.result == Success("recommend(neutral)")


async def test_continue_on_failure_stops_where_nothing_recovers(autojump_clock: trio.testing.MockClock) -> None:
    chain = (
        AgentChain()
        .then_with_fallback(slow("a", 1, error="x"), fallback=slow("b", 1, error="y"))
        .then(slow("c", 1))
    )
    got, took = await timed(SequentialOrchestrator(continue_on_failure=True).execute(chain, 0))
    assert took == 2
    assert got == ChainOutcome(Failure("y"), (StepFailure("a", "x"), StepFailure("b", "y")))


async def test_continue_on_failure_with_no_failures(autojump_clock: trio.testing.MockClock) -> None:
    chain = AgentChain().then(slow("a", 1)).then_with_transform(slow("b", 1), str.upper)
    got = await SequentialOrchestrator(continue_on_failure=True).execute(chain, "x")
    assert got == ChainOutcome(Success("b(A(X))"), ())


async def test_sequential_builders_and_tree_shape(autojump_clock: trio.testing.MockClock) -> None:
    chain = (
        AgentChain()
        .then_with_fallback(slow("primary", 2, error="down"), fallback=slow("backup", 1))
        .then(slow("recommend", 1))
    )
    # The reference's `.stop_on_error(false).continue_on_failure(true)`, step by step.
    built = SequentialOrchestrator().stopping_on_error(False).continuing_on_failure()
    assert built == SequentialOrchestrator(stop_on_error=False, continue_on_failure=True)
    got, took = await timed(built.execute(chain, "AAPL"))
    assert took == 4
    assert got == ChainOutcome(Success("recommend(backup(AAPL))"), (StepFailure("primary", "down"),))
    # tree() is what execute runs: nested, its value is the ChainOutcome.
    reporting = built.tree(chain)
    nested = await run(succeed("AAPL") >> reporting, None)
    assert nested == Success(got)
    plain = SequentialOrchestrator().continuing_on_failure(False)
    plain_tree = plain.tree(chain)
    assert plain == SequentialOrchestrator() and await run(plain_tree, "AAPL") == got.result
    # An intermediate builder state is refused only when a tree is built from it.
    halfway = SequentialOrchestrator().stopping_on_error(False)
    with pytest.raises(BuildError, match="stop_on_error=False needs continue_on_failure=True"):
        await halfway.execute(chain, "AAPL")
    with pytest.raises(BuildError, match=r"SequentialOrchestrator.tree\(\): stop_on_error=False"):
        halfway.tree(chain)


def test_chain_links_are_chain_links() -> None:
    recover = lambda e: 0  # noqa: E731
    chain = AgentChain().then(pure(len)).then_with_transform(pure(str), abs).then_with_fallback(pure(int), fallback=recover)
    assert chain.links == (
        ChainLink(chain.links[0].agent),
        ChainLink(chain.links[1].agent, transform=abs),
        ChainLink(chain.links[2].agent, recover=recover),
    )
    assert [link.name for link in chain.links] == ["len", "str", "int"]
    assert chain.links[1].as_agent() == pure(abs) >> chain.links[1].agent
    assert AgentChain(chain.links).as_agent() == chain.as_agent()


# -- HierarchicalOrchestrator ----------------------------------------------------


def joined(parts: tuple[str, ...]) -> str:
    return " + ".join(parts)


async def test_hierarchy_is_a_workflow(autojump_clock: trio.testing.MockClock) -> None:
    fetch = slow("fetch", 1)
    analysis = OrchestratorNode.parallel(slow("value", 2), slow("quality", 3))
    synthesis = AgentChain().then(pure(joined)).then(slow("decide", 1))
    h = (
        HierarchicalOrchestrator()
        .add_node("fetch", fetch)
        .add_node("analyze", analysis)
        .add_node("synthesize", synthesis)
        .add_dependency("synthesize", "analyze")
        .add_dependency("analyze", "fetch")
    )
    got, took = await timed(h.execute("AAPL"))
    wf, f = Workflow.start(str).add("fetch", fetch)
    wf, a = wf.add("analyze", slow("value", 2) | slow("quality", 3), after=f)
    wf, s = wf.add("synthesize", pure(joined) >> slow("decide", 1), after=a)
    want, want_took = await timed(run(wf.build(), "AAPL"))
    assert took == want_took == 5
    assert got == {name: Success(v) for name, v in want.unwrap().items}
    assert got["synthesize"] == Success("decide(value(fetch(AAPL)) + quality(fetch(AAPL)))")


async def test_hierarchy_passes_a_tuple_from_several_dependencies(autojump_clock: trio.testing.MockClock) -> None:
    h = (
        HierarchicalOrchestrator()
        .add_node("join", pure(lambda t: t))
        .add_node("b", slow("b", 2))
        .add_node("a", slow("a", 1))
        .add_dependency("join", "a")
        .add_dependency("join", "b")
    )
    got, took = await timed(h.execute("x"))
    assert got == {"join": Success(("a(x)", "b(x)")), "b": Success("b(x)"), "a": Success("a(x)")}
    assert list(got) == ["join", "b", "a"] and took == 2


async def test_hierarchy_task_nodes_and_failures(autojump_clock: trio.testing.MockClock) -> None:
    h = (
        HierarchicalOrchestrator()
        .add_node("fetch", [AgentTask("yahoo", slow("yahoo", 1), "AAPL"), AgentTask("alpha", slow("alpha", 2), "AAPL")])
        .add_node("broken", slow("broken", 1, error="nope"))
        .add_node("after", pure(lambda x: x))
        .add_dependency("after", "broken")
    )
    got = await h.execute(None)
    assert got["fetch"] == Success({"yahoo": "yahoo(AAPL)", "alpha": "alpha(AAPL)"})
    assert got["broken"] == Failure("nope")
    assert got["after"] == Failure(NodeSkipped(because="broken"))


async def test_hierarchy_cancel_policy(autojump_clock: trio.testing.MockClock) -> None:
    h = (
        HierarchicalOrchestrator(on_failure="cancel", max_concurrency=5)
        .add_node("bad", slow("bad", 1, error="x"))
        .add_node("long", slow("long", 5))
        .add_node("later", slow("later", 1))
        .add_dependency("later", "long")
    )
    got, took = await timed(h.execute(0))
    assert took == 1
    assert got == {
        "bad": Failure("x"),
        "long": Failure(NodeCancelled(started=True)),
        "later": Failure(NodeCancelled(started=False)),
    }


# -- bad input --------------------------------------------------------------------


def test_duplicate_task_names_are_refused() -> None:
    tasks = [AgentTask("same", pure(str), 1), AgentTask("same", pure(str), 2)]
    with pytest.raises(BuildError, match="duplicate task name 'same'"):
        ParallelOrchestrator().tree(tasks)


async def test_duplicate_task_names_refused_by_execute_and_streaming() -> None:
    tasks = [AgentTask("same", pure(str), 1), AgentTask("same", pure(str), 2)]
    with pytest.raises(BuildError, match="duplicate task name 'same'"):
        await ParallelOrchestrator().execute(tasks)
    with pytest.raises(BuildError, match="duplicate task name 'same'"):
        ParallelOrchestrator().execute_streaming(tasks)


def test_bad_task_and_orchestrator_arguments() -> None:
    with pytest.raises(BuildError, match="may not contain '/'"):
        AgentTask("a/b", pure(str), 1)
    with pytest.raises(TypeError, match="AgentTask 'x': agent must be an Agent"):
        AgentTask("x", str, 1)  # type: ignore[arg-type]
    with pytest.raises(BuildError, match="max_concurrency"):
        ParallelOrchestrator(max_concurrency=0)
    with pytest.raises(BuildError, match="timeout"):
        ParallelOrchestrator(timeout=-1)
    with pytest.raises(TypeError, match="aggregator must be"):
        ParallelOrchestrator(aggregator=len)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="wrap it as AgentTask"):
        ParallelOrchestrator().tree([pure(str)])  # type: ignore[arg-type]


def test_a_chain_with_no_links_is_refused() -> None:
    with pytest.raises(BuildError, match="the chain has no links"):
        AgentChain().as_agent()
    with pytest.raises(BuildError, match="the chain has no links"):
        HierarchicalOrchestrator().add_node("empty", AgentChain())


async def test_executing_a_chain_with_no_links_is_refused() -> None:
    with pytest.raises(BuildError, match=r"SequentialOrchestrator.execute\(\): the chain has no links"):
        await SequentialOrchestrator().execute(AgentChain(), "AAPL")  # type: ignore[misc]


def test_stop_on_error_false_needs_continue_on_failure() -> None:
    with pytest.raises(BuildError, match="stop_on_error=False needs continue_on_failure=True"):
        SequentialOrchestrator(stop_on_error=False)


def test_dependency_on_a_missing_node_is_refused() -> None:
    h = HierarchicalOrchestrator().add_node("analyze", pure(str))
    with pytest.raises(BuildError, match="depends_on 'fetch' is not a node of this orchestrator"):
        h.add_dependency("analyze", "fetch")
    with pytest.raises(BuildError, match="node 'report' is not a node"):
        h.add_dependency("report", "analyze")


def test_duplicate_node_name_is_refused() -> None:
    h = HierarchicalOrchestrator().add_node("a", pure(str))
    with pytest.raises(BuildError, match="duplicate node name.*'a'"):
        h.add_node("a", pure(len))


def test_a_cycle_is_refused_and_named() -> None:
    h = (
        HierarchicalOrchestrator()
        .add_node("A", pure(str))
        .add_node("B", pure(str))
        .add_node("C", pure(str))
        .add_dependency("B", "A")
        .add_dependency("C", "B")
    )
    with pytest.raises(CycleError, match="C -> A -> B -> C") as info:
        h.add_dependency("A", "C")
    assert info.value.cycle == ("C", "A", "B", "C")
    with pytest.raises(CycleError, match="A -> A"):
        h.add_dependency("A", "A")


def test_hierarchy_is_immutable_and_needs_nodes() -> None:
    empty = HierarchicalOrchestrator()
    one = empty.add_node("a", pure(str))
    assert empty.names == () and one.names == ("a",)
    with pytest.raises(BuildError, match="no nodes"):
        empty.as_agent()


# -- property: the orchestrator against a plain reference evaluator ----------------

task_specs = st.lists(
    st.tuples(st.integers(min_value=0, max_value=5), st.booleans(), st.sampled_from(list(Priority))),
    min_size=1,
    max_size=6,
)


def list_schedule(
    specs: list[tuple[int, bool, Priority]], width: int | None, timeout: int | None
) -> list[tuple[float, float, Result[str, Any]]]:
    """The plain reference: (start, end, own outcome) per task, list-scheduled on ``width`` slots.

    Tasks are taken by priority, then task order; each starts on the
    earliest free slot and runs ``min(duration, timeout)`` from its start.
    """
    n = len(specs)
    order = sorted(range(n), key=lambda i: -int(specs[i][2]))
    free = [0.0] * (width or n)
    out: list[tuple[float, float, Result[str, Any]]] = [(0.0, 0.0, Success(""))] * n
    for i in order:
        d, ok, _ = specs[i]
        slot = min(range(len(free)), key=free.__getitem__)
        start = free[slot]
        own: Result[str, Any]
        if timeout is not None and timeout <= d:
            end, own = start + timeout, Failure(TimedOut(f"parallel/t{i}", float(timeout)))
        else:
            end, own = start + d, Success(f"t{i}({i})") if ok else Failure(f"e{i}")
        free[slot] = end
        out[i] = (start, end, own)
    return out


@settings(max_examples=80, deadline=None)
@given(
    specs=task_specs,
    collect_errors=st.booleans(),
    timeout=st.none() | st.integers(min_value=1, max_value=4),
    width=st.none() | st.integers(min_value=1, max_value=3),
)
def test_parallel_orchestrator_matches_reference(
    specs: list[tuple[int, bool, Priority]], collect_errors: bool, timeout: int | None, width: int | None
) -> None:
    tasks = [
        AgentTask(f"t{i}", slow(f"t{i}", d, error=None if ok else f"e{i}"), i, priority=p)
        for i, (d, ok, p) in enumerate(specs)
    ]
    orchestrator = ParallelOrchestrator(collect_errors=collect_errors, timeout=timeout, max_concurrency=width)

    async def main() -> tuple[dict[str, Result[str, Any]], float]:
        out: tuple[dict[str, Result[str, Any]], float] = await timed(orchestrator.execute(tasks))
        return out

    got, took = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    plan = list_schedule(specs, width, timeout)
    assert list(got) == [t.name for t in tasks]
    failures = [end for _, end, own in plan if isinstance(own, Failure)]
    if collect_errors or not failures:
        assert took == max(end for _, end, _ in plan)
        assert got == {f"t{i}": own for i, (_, _, own) in enumerate(plan)}
        return
    first = min(failures)
    assert took == first
    for i, (start, end, own) in enumerate(plan):
        if end < first:
            assert got[f"t{i}"] == own
        elif start > first:
            assert got[f"t{i}"] == Failure(NodeCancelled(started=False))
        elif start < first < end:
            assert got[f"t{i}"] == Failure(NodeCancelled(started=True))
        # (what starts or ends in the very instant of the first failure may go either way)


# -- the docs ------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent


def test_guide_snippets_run_and_print_what_they_claim(tmp_path: Path) -> None:
    """docs/guide.md's snippets, in order, are one program: it runs and type-checks."""
    text = (ROOT / "docs" / "guide.md").read_text()
    code = "\n".join(re.findall(r"```python\n(.*?)```", text, re.S))
    claimed = [c.strip() for c in re.findall(r"#\s+([<\[{].*)$", code, re.M)]
    script = tmp_path / "guide_snippets.py"
    script.write_text(code)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == claimed
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(script)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout


def test_reference_lists_every_public_name() -> None:
    """docs/reference.md has a line for every name in combinators.__all__ and the orchestration module."""
    import combinators
    import combinators.orchestration

    text = (ROOT / "docs" / "reference.md").read_text()
    listed = set(re.findall(r"^\| `([A-Za-z_]+)", text, re.M))
    missing = sorted((set(combinators.__all__) | set(combinators.orchestration.__all__)) - listed)
    assert not missing, f"docs/reference.md lacks: {missing}"


def test_every_orchestrator_is_immutable() -> None:
    import attrs

    h = HierarchicalOrchestrator(max_concurrency=2)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        h.max_concurrency = 7  # type: ignore[misc]
    grown = h.add_node("a", pure(abs))
    assert grown is not h and h == HierarchicalOrchestrator(max_concurrency=2)
    p = ParallelOrchestrator()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        p.max_concurrency = 3  # type: ignore[misc]
