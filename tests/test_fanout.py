"""each, collect, first_success, vote, average_confidence, aggregate.

Properties compare the trio interpreter against plain reference evaluators
written here; under ``MockClock(autojump_threshold=0)`` run times are exact
(DESIGN §6).
"""

from __future__ import annotations

import collections
import functools
import heapq
import math
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, Never, TypeVar

import attrs
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from returns.result import Failure, Result, Success

from combinators import (
    Agent,
    AgentTypeError,
    AllFailed,
    BuildError,
    Confident,
    NoMajority,
    Recorder,
    agent,
    aggregate,
    average_confidence,
    collect,
    each,
    Priority,
    fail,
    first_success,
    lift,
    pure,
    run,
    run_sync,
    succeed,
    vote,
)
from combinators.testing import Calls, TaskCounter, fake
from examples.market import Analysis

_T = TypeVar("_T")

PROPERTY = settings(max_examples=60, deadline=None)


def virtual(fn: Callable[[], Awaitable[_T]]) -> _T:
    """Run ``fn`` in a fresh trio run on a MockClock (one per hypothesis example)."""
    return trio.run(fn, clock=trio.testing.MockClock(autojump_threshold=0))


@attrs.frozen
class Spec:
    """One simulated call: ``delay`` seconds of trio time, then success or failure."""

    delay: int
    ok: bool
    value: str


specs = st.builds(Spec, st.integers(0, 5), st.booleans(), st.sampled_from("abc"))


@agent
async def step(spec: Spec) -> Result[str, str]:
    """Sleeps ``spec.delay``, then answers as the spec says."""
    await trio.sleep(spec.delay)
    return Success(spec.value) if spec.ok else Failure("e-" + spec.value)


def outcome(spec: Spec) -> Result[str, str]:
    return Success(spec.value) if spec.ok else Failure("e-" + spec.value)


async def timed(tree: Agent[Any, Any, Any], x: Any, **kwargs: Any) -> tuple[Result[Any, Any], float]:
    start = trio.current_time()
    result = await run(tree, x, **kwargs)
    return result, trio.current_time() - start


def _twice(x: int) -> int:
    return 2 * x


def _same(x: int) -> int:
    return x


def _recip(x: int) -> float:
    return 1 / x


# -- reference evaluators ------------------------------------------------------------


def ref_schedule(items: list[Spec], width: int | None) -> list[tuple[float, float]]:
    """(start, finish) of each element: list scheduling in input order on ``width`` slots."""
    if width is None:
        return [(0.0, float(s.delay)) for s in items]
    free = [0.0] * width
    out = []
    for s in items:
        start = heapq.heappop(free)
        heapq.heappush(free, start + s.delay)
        out.append((start, start + s.delay))
    return out


def ref_each(items: list[Spec], width: int | None) -> tuple[list[Result[str, str]], float, float | None]:
    """Outcomes alone, the makespan, and the time of the first failure (None if none)."""
    times = ref_schedule(items, width)
    makespan = max((f for _, f in times), default=0.0)
    fails = [f for (_, f), s in zip(times, items, strict=True) if not s.ok]
    return [outcome(s) for s in items], makespan, min(fails, default=None)


def ref_first_success(ops: list[Spec], hedge: float | None) -> tuple[list[float], float | None, float]:
    """Start times of the operands that start, the winning finish time, the elapsed time."""
    n = len(ops)
    if hedge is None:
        starts = [0.0] * n
    else:
        starts = [0.0]
        while len(starts) < n:
            fins = [starts[j] + ops[j].delay for j in range(len(starts))]
            best = min((f for f, s in zip(fins, ops, strict=False) if s.ok), default=math.inf)
            nxt = starts[-1] + hedge
            if not any(s.ok for s in ops[: len(starts)]):
                nxt = min(nxt, max(fins))
            if best < nxt:
                break
            starts.append(nxt)
    fins = [starts[j] + ops[j].delay for j in range(len(starts))]
    wins = [f for f, s in zip(fins, ops, strict=False) if s.ok]
    if wins:
        return starts, min(wins), min(wins)
    return starts, None, max(fins)


def ref_vote(ops: list[Spec]) -> tuple[Result[str, str] | None, float]:
    """Counter-based strict majority over all outcomes, and the time it became certain."""
    n = len(ops)
    counter = collections.Counter(s.value for s in ops if s.ok)
    top = counter.most_common(1)
    winner = top[0][0] if top and 2 * top[0][1] > n else None
    seen: collections.Counter[str] = collections.Counter()
    done = 0
    decided_at = 0.0
    for t in sorted({s.delay for s in ops}):
        for s in ops:
            if s.delay == t:
                done += 1
                if s.ok:
                    seen[s.value] += 1
        best = max(seen.values(), default=0)
        decided_at = float(t)
        if 2 * best > n or 2 * (best + n - done) <= n:
            break
    return (Success(winner) if winner is not None else None), decided_at


# -- each --------------------------------------------------------------------------------


@PROPERTY
@given(st.lists(specs, max_size=12), st.sampled_from([None, 1, 2, 3]), st.booleans(), st.booleans())
def test_each_matches_reference(items: list[Spec], width: int | None, via_run: bool, observe: bool) -> None:
    """Input order, fail-fast at the first failure's time, list scheduling under limits.

    Run with and without an observer: observing must not change results or times.
    """
    if width is None:
        tree: Agent[Any, Any, Any] = each(step)
        kwargs: dict[str, Any] = {}
    elif via_run:
        tree, kwargs = each(step), {"max_concurrency": width}
    else:
        tree, kwargs = each(step).limit(width), {}
    rec = Recorder()
    if observe:
        kwargs["observer"] = rec
    result, elapsed = virtual(functools.partial(timed, tree, items, **kwargs))
    alone, makespan, first_fail = ref_each(items, width)
    if first_fail is None:
        assert result == Success([r.unwrap() for r in alone])
        assert elapsed == makespan
    else:
        assert elapsed == first_fail
        failing = {outcome(s) for s, (_, f) in zip(items, ref_schedule(items, width), strict=True)
                   if not s.ok and f == first_fail}
        assert result in failing
    if observe:
        # Every element that started reported under its own path, and ended.
        started = {e.path for e in rec.events if e.kind.value == "started"}
        ended = {e.path for e in rec.events if e.kind.value != "started"}
        assert started == ended
        assert {p.rsplit("/", 1)[-1] for p in started if p.startswith(("each/", "each.limit/each/"))} <= {
            f"step[{i}]" for i in range(len(items))
        }


@PROPERTY
@given(st.lists(specs, max_size=12), st.sampled_from([None, 1, 3]))
def test_collect_each_keeps_every_outcome(items: list[Spec], width: int | None) -> None:
    """collect(each(a)) never fails; each element's outcome equals running it alone."""
    result, elapsed = virtual(functools.partial(timed, collect(each(step)), items, max_concurrency=width))
    alone, makespan, _ = ref_each(items, width)
    assert result == Success(alone)
    assert elapsed == makespan


@PROPERTY
@given(st.lists(specs, min_size=2, max_size=6))
def test_collect_group_keeps_every_outcome(ops: list[Spec]) -> None:
    """collect(a | b | ...) gives each operand's own outcome, after the slowest."""
    # Each operand reads its own spec from the input tuple.
    operands = [pure(functools.partial(_nth, i)) >> step for i in range(len(ops))]
    group: Any = operands[0]
    for op in operands[1:]:
        group = group | op
    result, elapsed = virtual(functools.partial(timed, collect(group), tuple(ops)))
    assert result == Success(tuple(outcome(s) for s in ops))
    assert elapsed == max(s.delay for s in ops)


def _nth(i: int, xs: tuple[Spec, ...]) -> Spec:
    return xs[i]


async def test_each_paths_and_empty_input(autojump_clock: trio.testing.MockClock) -> None:
    rec = Recorder()
    double = pure(_twice).named("double")
    assert await run(each(double), [1, 2], observer=rec) == Success([2, 4])
    paths = {e.path for e in rec.events}
    assert paths == {"each", "each/double[0]", "each/double[1]"}
    assert await run(each(double), []) == Success([])
    assert await run(each(double), (x for x in range(3)), max_concurrency=2) == Success([0, 2, 4])


async def test_each_10000_inputs_under_limit_keeps_tasks_flat(autojump_clock: trio.testing.MockClock) -> None:
    """DESIGN §5: a fan-out takes a slot before it spawns: ~100 tasks, not 10,000."""
    for where in ("run", "each", "element"):
        calls = Calls()
        leaf = fake("work", delay=1.0, fn=lambda x: x + 1, calls=calls)
        counter = TaskCounter()
        trio.lowlevel.add_instrument(counter)
        try:
            trees: dict[str, tuple[Agent[Any, Any, Any], dict[str, Any]]] = {
                "run": (each(leaf), {"max_concurrency": 100}),
                "each": (each(leaf).limit(100), {}),
                "element": (each(leaf.limit(100)), {}),
            }
            tree, kwargs = trees[where]
            result, elapsed = await timed(tree, range(10_000), **kwargs)
        finally:
            trio.lowlevel.remove_instrument(counter)
        assert result == Success(list(range(1, 10_001)))
        assert elapsed == 100.0  # 10,000 one-second calls, 100 at a time
        assert calls.peak == 100
        assert counter.peak <= 100 + 2  # the workers (+ slack for the run's own tasks)
        assert counter.alive == 0


async def test_each_fail_fast_cancels_the_rest(autojump_clock: trio.testing.MockClock) -> None:
    calls = Calls()
    slow = fake("slow", delay=10.0, value=1, calls=calls)
    broken = fake("broken", delay=1.0, error="no")

    @agent
    async def pick(x: int) -> Result[int, str]:
        return await run(broken if x == 0 else slow, x)

    result, elapsed = await timed(each(pick), [0, 1, 2])
    assert result == Failure("no")
    assert elapsed == 1.0
    assert sorted(calls.cancelled) == [1, 2]


async def test_each_unexpected_exception_propagates_as_itself(autojump_clock: trio.testing.MockClock) -> None:
    def bad(x: int) -> int:
        if x == 2:
            raise KeyError(x)
        return x

    options: list[dict[str, Any]] = [{}, {"max_concurrency": 2}]
    for kwargs in options:
        with pytest.raises(KeyError) as info:
            await run(each(pure(bad)), [1, 2, 3], **kwargs)
        assert any("each/bad[1]" in n for n in info.value.__notes__)

    def broken_input() -> Iterable[int]:
        yield 1
        raise RuntimeError("input broke")

    with pytest.raises(RuntimeError, match="input broke"):
        await run(each(pure(bad)), broken_input(), max_concurrency=2)


# -- first_success -------------------------------------------------------------------------


@PROPERTY
@given(
    st.lists(specs, min_size=1, max_size=5),
    st.sampled_from([None, 0.37, 1.37, 2.37]),
)
def test_first_success_matches_reference(ops: list[Spec], hedge: float | None) -> None:
    """Smallest finishing success wins at its time; losers cancelled; unneeded never start."""
    logs = [Calls() for _ in ops]
    agents = [
        fake(f"op{i}", delay=s.delay, value=(i, s.value) if s.ok else None,
             error=None if s.ok else f"e{i}", calls=logs[i])
        for i, s in enumerate(ops)
    ]
    tree = first_success(*agents, hedge=hedge)
    result, elapsed = virtual(functools.partial(timed, tree, "x"))
    starts, win_time, ref_elapsed = ref_first_success(ops, hedge)
    assert elapsed == pytest.approx(ref_elapsed)
    started = [i for i, log in enumerate(logs) if log.started]
    assert started == list(range(len(starts)))  # operands never needed never start
    if win_time is None:
        assert result == Failure(AllFailed(tuple(f"e{i}" for i in range(len(ops)))))
    else:
        winners = {(i, s.value) for i, s in enumerate(ops[: len(starts)])
                   if s.ok and starts[i] + s.delay == pytest.approx(win_time)}
        assert isinstance(result, Success) and result.unwrap() in winners
        for i in started:
            finished_early = starts[i] + ops[i].delay <= win_time + 1e-9
            assert bool(logs[i].finished) or bool(logs[i].cancelled)
            if not finished_early:
                assert logs[i].cancelled == ["x"]  # the losers were cancelled at once


async def test_first_success_hedge_starts_backup_only_when_slow(autojump_clock: trio.testing.MockClock) -> None:
    fast, backup = Calls(), Calls()
    tree = first_success(
        fake("primary", delay=1.0, value="p", calls=fast),
        fake("backup", delay=1.0, value="b", calls=backup),
        hedge=2.0,
    )
    assert await timed(tree, 0) == (Success("p"), 1.0)
    assert backup.started == []
    slow = first_success(fake("primary", delay=5.0, value="p", calls=fast), fake("backup", delay=1.0, value="b"),
                         hedge=2.0)
    assert await timed(slow, 0) == (Success("b"), 3.0)
    assert fast.cancelled == [0]


# -- vote ----------------------------------------------------------------------------------


@PROPERTY
@given(st.lists(specs, min_size=1, max_size=7))
def test_vote_matches_counter_majority(ops: list[Spec]) -> None:
    """Equals a Counter-based strict majority and ends the moment it is certain."""
    logs = [Calls() for _ in ops]
    agents = [
        fake(f"op{i}", delay=s.delay, value=s.value, error=None if s.ok else f"e{i}", calls=logs[i])
        for i, s in enumerate(ops)
    ]
    result, elapsed = virtual(functools.partial(timed, vote(*agents), None))
    expected, decided_at = ref_vote(ops)
    assert elapsed == decided_at
    if expected is None:
        assert isinstance(result, Failure) and isinstance(result.failure(), NoMajority)
    else:
        assert result == expected
    for i, s in enumerate(ops):
        if s.delay > decided_at:
            assert logs[i].cancelled == [None]  # the rest was cancelled at once


async def test_vote_key_normalises_and_reports_candidates(autojump_clock: trio.testing.MockClock) -> None:
    answers = [succeed("BUY"), succeed("buy "), succeed("sell")]
    assert await run(vote(*answers, key=lambda s: s.strip().lower()), None) == Success("BUY")
    split = vote(
        fake("a", delay=1.0, value="buy"),
        fake("b", delay=2.0, value="sell"),
        fake("c", delay=3.0, error="down"),
        fake("d", delay=4.0, value="hold"),
    )
    # After three outcomes no value can reach 3 of 4 votes: the vote ends at t=3.
    assert await timed(split, None) == (Failure(NoMajority((("buy", 1), ("sell", 1)), 1)), 3.0)
    with pytest.raises(TypeError, match="pass key="):
        await run(vote(succeed([1]), succeed([1])), None)


async def test_bugs_propagate_as_themselves_from_races(autojump_clock: trio.testing.MockClock) -> None:
    """An unexpected exception cancels the siblings and is raised as itself, not in a group."""

    def bug(_: object) -> int:
        raise ZeroDivisionError("bug")

    calls = Calls()
    slow = fake("slow", delay=5.0, value=1, calls=calls)
    for tree in (
        first_success(slow, pure(bug)),
        first_success(fail("x"), pure(bug), hedge=1.0),
        vote(slow, pure(bug), slow),
        average_confidence(slow, pure(bug)),
        collect(slow | pure(bug)),
        aggregate([slow, pure(bug)], lambda rs: rs[0]),
    ):
        with pytest.raises(ZeroDivisionError, match="bug"):
            await run(tree, None)
    assert len(calls.cancelled) == 6 and calls.finished == []


# -- average_confidence and aggregate -------------------------------------------------------


def _analysis(analyst: str, confidence: float) -> Analysis:
    return Analysis("AAPL", analyst, "buy", 0.5, confidence)


async def test_average_confidence(autojump_clock: trio.testing.MockClock) -> None:
    a, b = _analysis("value", 0.6), _analysis("trading", 0.9)
    tree = average_confidence(succeed(a), fail("down"), succeed(b))
    result = await run(tree, None)
    assert isinstance(result, Success)
    assert result.unwrap().mean == pytest.approx(0.75)
    assert result.unwrap() == Confident(result.unwrap().mean, (a, b), 1)
    assert await run(average_confidence(fail("x"), fail("y")), None) == Failure(AllFailed(("x", "y")))
    with pytest.raises(TypeError, match="confidence"):
        await run(average_confidence(succeed("no confidence here")), None)  # type: ignore[type-var]


async def test_aggregate_sees_every_outcome(autojump_clock: trio.testing.MockClock) -> None:
    def count(rs: tuple[Result[int, str], ...]) -> Result[int, str]:
        oks = [r.unwrap() for r in rs if isinstance(r, Success)]
        return Success(sum(oks)) if oks else Failure("none")

    slow = fake("slow", delay=3.0, value=10)
    result, elapsed = await timed(aggregate([succeed(1), fail("x"), slow], count), None)
    assert (result, elapsed) == (Success(11), 3.0)
    with pytest.raises(TypeError, match="must return Success"):
        await run(aggregate([succeed(1)], lambda rs: 1), None)  # type: ignore[arg-type, return-value]


# -- bad input -----------------------------------------------------------------------------


def test_bad_input_is_refused_at_build_time() -> None:
    with pytest.raises(BuildError, match=r"first_success\(\) needs at least one agent"):
        first_success()
    with pytest.raises(BuildError, match=r"vote\(\) needs at least one agent"):
        vote()
    with pytest.raises(BuildError, match=r"average_confidence\(\) needs at least one agent"):
        average_confidence()
    with pytest.raises(BuildError, match="hedge"):
        first_success(succeed(1), hedge=0)
    with pytest.raises(AgentTypeError, match="each"):
        each(len)  # type: ignore[arg-type]
    with pytest.raises(AgentTypeError, match="argument 2"):
        vote(succeed(1), "x")  # type: ignore[call-overload]
    with pytest.raises(AgentTypeError, match="list or tuple"):
        aggregate(succeed(1), lambda rs: rs[0])  # type: ignore[arg-type]
    with pytest.raises(AgentTypeError, match="aggregate"):
        aggregate([succeed(1)], "f")  # type: ignore[arg-type]


async def test_each_on_a_non_iterable_input_names_the_node(autojump_clock: trio.testing.MockClock) -> None:
    scores: Agent[Any, list[int], Never] = each(pure(_twice)).named("scores")
    tree = pure(_same) >> scores
    with pytest.raises(TypeError, match=r"each\(\) at 'seq/scores' needs an iterable input, got int 5"):
        await run(tree, 5)


# -- structure ----------------------------------------------------------------------------


def test_nodes_are_values() -> None:
    a = pure(_twice).named("a")
    assert each(a) == each(a) and hash(each(a)) == hash(each(a))
    assert collect(a | a) == collect(a | a)
    assert first_success(a, a, hedge=1) != first_success(a, a, hedge=2)
    assert repr(collect(each(a))) == "collect(each(pure(_twice).named('a')))"
    assert [n.name for n in vote(a, a).walk()] == ["vote", "a", "a"]


async def test_collect_named_group_is_one_outcome(autojump_clock: trio.testing.MockClock) -> None:
    """Only an unnamed group is spread: a named one is opaque, as its static type says."""
    group = (succeed(1) | fail("no")).named("pair")
    assert await run(collect(group), None) == Success(Failure("no"))
    assert await run(collect(fail("x")), None) == Success(Failure("x"))


async def test_collect_reports_the_group_node(autojump_clock: trio.testing.MockClock) -> None:
    rec = Recorder()
    await run(collect(pure(_twice).named("a") | fail("b").named("b")), -1, observer=rec)
    assert {(e.kind.value, e.path) for e in rec.events if e.kind.value != "started"} == {
        ("succeeded", "collect/par/a"),
        ("failed", "collect/par/b"),
        ("succeeded", "collect/par"),
        ("succeeded", "collect"),
    }


def test_lift_in_each_keeps_crash_paths() -> None:
    result = run_sync(collect(each(lift(_recip))), [1, 0])
    assert isinstance(result, Success)
    assert result.unwrap()[1].failure().path == "collect/each/_recip[1]"



def test_many_stocks_example_runs() -> None:
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(
        [sys.executable, "-m", "examples.many_stocks"], cwd=root, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "unknown ['NOPE']" in proc.stdout
    assert "the backup won" in proc.stdout
    assert "GOOGL sell" in proc.stdout


def test_many_stocks_example_in_virtual_time() -> None:
    from examples.many_stocks import main

    lines = virtual(main)
    assert "in 0.15s (the backup won)" in lines[1]
    assert len(lines) == 3 + 6


# -- each's workers call a bare agent leaf inline (benchmarks/each.py, do-nothing row) -------


def _bare_trees(leaf: Any) -> list[Any]:
    """The same fan-out under a run's limit, a limit node, a shared limiter and priorities."""
    from combinators import PriorityLimiter

    return [each(leaf), each(leaf).limit(2), each(leaf.limit(PriorityLimiter(2))), each(leaf.priority(Priority.HIGH)).limit(2)]


async def test_a_bare_leaf_that_cancels_its_run_starts_no_other_leaf() -> None:
    """A leaf that cancels an enclosing scope without yielding: the next start is refused."""
    for tree_of in range(4):
        started: list[int] = []
        with trio.CancelScope() as outer:

            async def stopper(x: int) -> Result[int, str]:
                started.append(x)
                if x == 3:
                    outer.cancel()
                return Success(x)

            await run(_bare_trees(agent(stopper))[tree_of], range(10), max_concurrency=2)
        assert outer.cancelled_caught
        assert started == [0, 1, 2, 3], tree_of


async def test_bare_leaves_keep_the_limit_notes_and_results() -> None:
    running = peak = 0

    async def step(x: int) -> Result[int, str]:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            await trio.sleep(0)
        finally:
            running -= 1
        return Success(x * 2) if x != 7 else Failure(f"bad {x}")

    for tree in _bare_trees(agent(step)):
        peak = 0
        assert await run(tree, range(7), max_concurrency=2) == Success([0, 2, 4, 6, 8, 10, 12])
        assert peak <= 2
        assert await run(tree, range(9), max_concurrency=2) == Failure("bad 7")

    async def boom(x: int) -> Result[int, str]:
        if x == 2:
            raise KeyError(x)
        return Success(x)

    with pytest.raises(KeyError) as info:
        await run(each(agent(boom)), range(5), max_concurrency=2)
    assert "combinators: raised in node 'each/boom[2]'" in info.value.__notes__

    async def sloppy(x: int) -> Result[int, str]:
        return x  # type: ignore[return-value]

    with pytest.raises(TypeError, match=r"each/sloppy\[0\]"):
        await run(each(agent(sloppy)), range(3), max_concurrency=2)


async def test_a_fail_fast_each_without_a_limit_starts_no_element_after_the_failure() -> None:
    """Every element's task is spawned at once; those not yet run when one fails start nothing."""
    started: list[int] = []

    async def first_fails(x: int) -> Result[int, str]:
        started.append(x)
        return Failure("no") if x == 0 else Success(x)

    for _ in range(10):  # trio runs the spawned tasks in a random order
        started.clear()
        assert await run(each(agent(first_fails)), range(4)) == Failure("no")
        assert started[-1] == 0  # nothing started after the failing element
