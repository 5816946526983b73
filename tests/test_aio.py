"""combinators.aio: trees run from asyncio, asyncio leaves, and limiters shared across runs.

The asyncio tests are plain functions calling ``asyncio.run`` (pytest-trio's
trio mode only takes ``async def`` tests).  They run on the real clock, so
they wait on events and counters, never on how long something took; every
delay is a few milliseconds.  ``run_clean`` fails a test that leaves a trio
run behind, logs an asyncio error (a task destroyed while pending, a lost
exception) or warns.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import warnings
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest
import trio
import trio.testing
from returns.result import Failure, Result, Success

from combinators import (
    Agent,
    Crashed,
    EventKind,
    Journal,
    Priority,
    PriorityLimiter,
    Recorder,
    TimedOut,
    Workflow,
    agent,
    aggregate,
    aio,
    collect,
    each,
    fail,
    first_success,
    lift,
    pure,
    repeat,
    run,
    run_sync,
    succeed,
    switch,
    vote,
    when,
)
from combinators._aio import _HOSTS
from combinators._expr import node_cache
from combinators import StartWindow
from combinators.testing import Calls, fake

_T = TypeVar("_T")


def run_clean(main: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """``asyncio.run(main())`` with warnings as errors; nothing may be logged or left behind."""
    problems: list[dict[str, Any]] = []
    loops: list[asyncio.AbstractEventLoop] = []

    async def wrapped() -> _T:
        loops.append(asyncio.get_running_loop())
        loops[0].set_exception_handler(lambda _, context: problems.append(context))
        return await main()

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = asyncio.run(wrapped())
        gc.collect()
    assert not problems, problems
    assert loops[0] not in _HOSTS  # the closed loop's host is gone, and forgotten
    # No trio run is left in this thread: a new one starts.
    trio.run(trio.lowlevel.checkpoint)
    return result


# --------------------------------------------------------------------------
# aio.run gives what run gives


@agent
async def double(x: int) -> Result[int, str]:
    await trio.sleep(0)
    return Success(2 * x)


@agent
async def negative_fails(x: int) -> Result[int, str]:
    await trio.sleep(0)
    return Failure(f"{x} < 0") if x < 0 else Success(x)


@aio.agent
async def aio_double(x: int) -> Result[int, str]:
    await asyncio.sleep(0)
    return Success(2 * x)


def _inc(x: int) -> int:
    return x + 1


inc = pure(_inc).named("inc")


def _workflow(second: Agent[int, int, str]) -> Agent[int, Any, Any]:
    wf, a = Workflow.start(int).add("a", double)
    wf, b = wf.add("b", second, after=a)
    wf, _ = wf.add("c", inc, after=a)
    return wf.build()
shared = PriorityLimiter(2)

TREES: dict[str, tuple[Agent[Any, Any, Any], Any]] = {
    "leaf": (double, 3),
    "aio leaf": (aio_double, 3),
    "const": (succeed(7), None),
    "fail": (fail("no"), None),
    "then": (double >> inc >> aio_double, 1),
    "parallel": (double | aio_double | inc, 2),
    "parallel fails fast": (negative_fails | double, -1),
    "transform, map_error": (negative_fails.transform(str).map_error(len), -12),
    "fallback": (negative_fails.fallback(succeed(0)), -1),
    "recover": (negative_fails.recover(len), -5),
    "timeout passes": (aio_double.timeout(30), 4),
    "retry": (negative_fails.retry(2), -1),
    "limit": (each(double.limit(2)), [1, 2, 3]),
    "shared limit": (each(aio_double.limit(shared)), list(range(10))),
    "priority, rate": (each(double.priority(Priority.HIGH).rate(1000)), [1, 2]),
    "aio leaf rated, shared window": (each(aio_double.rate(StartWindow(1000, 1.0))), [1, 2, 3]),
    "each fails fast": (each(negative_fails), [1, -2, 3]),
    "collect": (collect(negative_fails | aio_double), -3),
    "first_success": (first_success(negative_fails, aio_double), -3),
    "vote": (vote(double, aio_double, inc), 1),
    "aggregate": (aggregate([double, negative_fails], lambda rs: Success(len(rs))), -1),
    "switch, when": (switch(lambda x: x > 0, {True: double}, default=inc) >> when(lambda x: x > 5, aio_double, inc), 3),
    "bind": (double.bind(lambda n: inc if n > 2 else aio_double), 2),
    "repeat": (repeat(inc, until=lambda x: x >= 5, max_times=10), 0),
    "workflow": (_workflow(aio_double), 2),
}


def _trio_only(tree: Agent[Any, Any, Any]) -> bool:
    from combinators._aio_leaf import is_host_call
    from combinators._expr import Leaf

    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, Leaf) and is_host_call(node.fn):
            return False
        stack.extend(node.children())
    return True


@pytest.mark.parametrize("name", sorted(TREES))
def test_aio_run_gives_what_run_gives(name: str) -> None:
    tree, x = TREES[name]

    async def main() -> Result[Any, Any]:
        return await aio.run(tree, x)

    got = run_clean(main)
    # The reference: run inside trio, where asyncio leaves get the same
    # answers from a trio twin of the tree (aio_double -> double).
    twin = tree if _trio_only(tree) else None
    if twin is not None:
        assert got == run_sync(twin, x)
    else:
        assert got == EXPECTED[name], got


EXPECTED: dict[str, Result[Any, Any]] = {
    "aio leaf": Success(6),
    "then": Success(6),
    "parallel": Success((4, 4, 3)),
    "timeout passes": Success(8),
    "shared limit": Success([2 * i for i in range(10)]),
    "aio leaf rated, shared window": Success([2, 4, 6]),
    "collect": Success((Failure("-3 < 0"), Success(-6))),
    "first_success": Success(-6),
    "vote": Success(2),
    "switch, when": Success(12),
    "bind": Success(8),
    "workflow": run_sync(_workflow(double), 2),
}


def test_aio_run_reuses_the_host_and_passes_run_options() -> None:
    seen = Recorder()

    async def main() -> list[Result[Any, Any]]:
        first = await aio.run(double >> aio_double, 1, observer=seen)
        second = await aio.run(each(double), [1, 2, 3], max_concurrency=1)
        return [first, second]

    assert run_clean(main) == [Success(4), Success([2, 4, 6])]
    kinds = {(e.path, e.kind) for e in seen.events}
    assert any(k is EventKind.SUCCEEDED and p.endswith("aio_double") for p, k in kinds)


def test_a_bug_in_an_aio_leaf_propagates_with_its_path() -> None:
    @aio.agent
    async def broken(x: int) -> Result[int, str]:
        await asyncio.sleep(0)
        raise KeyError(x)

    async def main() -> None:
        with pytest.raises(KeyError) as info:
            await aio.run(double >> broken, 1)
        assert any("broken" in note for note in getattr(info.value, "__notes__", []))

    run_clean(main)


def test_aio_lift_turns_exceptions_into_crashed() -> None:
    async def parse(text: str) -> int:
        await asyncio.sleep(0)
        return int(text)

    async def main() -> tuple[Result[int, Crashed], Result[int, Crashed]]:
        return await aio.run(aio.lift(parse), "12"), await aio.run(aio.lift(parse), "x")

    ok, bad = run_clean(main)
    assert ok == Success(12)
    match bad:
        case Failure(Crashed(exception=ValueError())):
            pass
        case _:
            pytest.fail(f"expected a Crashed ValueError, got {bad}")


def test_aio_leaves_refuse_sync_functions() -> None:
    from combinators import AgentTypeError

    with pytest.raises(AgentTypeError, match="async"):
        aio.agent(lambda x: x)
    with pytest.raises(AgentTypeError, match="combinators.lift"):
        aio.lift(lambda x: x)


def test_aio_leaf_is_named_equal_and_versioned_like_agent() -> None:
    from combinators import versioned

    assert aio_double.name == "aio_double"
    assert aio.agent(aio_double_fn) == aio.agent(aio_double_fn)
    assert aio.agent(name="other")(aio_double_fn).name == "other"
    tagged = versioned(aio.agent(aio_double_fn), "v2")

    async def main() -> Result[int, str]:
        return await aio.run(tagged, 5)

    assert run_clean(main) == Success(10)
    with pytest.raises(RuntimeError, match="aio.run"):
        run_sync(tagged, 5)


async def aio_double_fn(x: int) -> Result[int, str]:
    await asyncio.sleep(0)
    return Success(2 * x)


# --------------------------------------------------------------------------
# Under plain run: a clear error at the start


def test_plain_run_of_a_tree_with_asyncio_leaves_fails_before_any_leaf() -> None:
    calls = Calls()
    tree = fake("first", calls=calls) >> aio_double
    with pytest.raises(RuntimeError, match=r"asyncio leaves .*combinators\.aio\.run"):
        run_sync(tree, 1)
    assert calls.started == []
    # A leaf reached without the start check (compiled at run time by bind) fails too.
    late = succeed(1).bind(lambda _: aio_double)
    with pytest.raises(RuntimeError, match="needs an asyncio loop"):
        run_sync(late, None)


# --------------------------------------------------------------------------
# Many callers, one loop


def test_many_concurrent_callers_share_one_guest_run_and_never_block_the_loop() -> None:
    api = PriorityLimiter(3)
    running = 0
    peak = 0
    ticks = 0

    @agent
    async def llm(x: int) -> Result[int, str]:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            await trio.sleep(0.001)
        finally:
            running -= 1
        return Success(x)

    @aio.agent
    async def store(x: int) -> Result[int, str]:
        await asyncio.sleep(0)
        return Success(x + 1000)

    tree = llm.limit(api) >> store

    async def main() -> list[Result[int, str]]:
        nonlocal ticks
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0)

        tick_task = asyncio.create_task(ticker())
        try:
            return await asyncio.gather(*(aio.run(tree, i) for i in range(200)))
        finally:
            stop.set()
            await tick_task

    results = run_clean(main)
    assert results == [Success(i + 1000) for i in range(200)]
    assert peak == 3  # shared by every request: never more than its size
    assert ticks > 200  # the loop kept turning while the runs went on
    assert api.borrowed == 0 and api.waiting == 0


def test_two_loops_in_two_threads_each_get_their_own_guest_run() -> None:
    out: list[Result[int, str]] = []

    def worker() -> None:
        out.append(asyncio.run(aio.run(double >> aio_double, 1)))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out == [Success(4), Success(4)]


def test_aio_run_inside_a_trio_run_is_refused_with_a_hint() -> None:
    # trio-asyncio or a trio host thread: trio allows one run per thread.
    async def trio_main() -> None:
        loop = asyncio.new_event_loop()
        try:
            with pytest.raises(RuntimeError, match="already active in this thread"):
                loop.run_until_complete(aio.run(double, 1))
        finally:
            loop.close()

    trio.run(trio_main)


# --------------------------------------------------------------------------
# Cancellation both ways


def test_cancelling_one_caller_stops_its_whole_run_before_it_returns() -> None:
    log: list[str] = []
    waiting: set[str] = set()
    gate = asyncio.Event()

    @aio.agent
    async def aio_slow(x: int) -> Result[int, str]:
        waiting.add(f"aio {x}")
        try:
            await gate.wait()
            return Success(x)
        finally:
            log.append(f"aio end {x}")

    @agent
    async def trio_slow(x: int) -> Result[int, str]:
        waiting.add(f"trio {x}")
        try:
            await trio.sleep(3600 if x == 0 else 0.001)
            return Success(x)
        finally:
            log.append(f"trio end {x}")

    started = {0: asyncio.Event(), 1: asyncio.Event(), 2: asyncio.Event()}

    @aio.agent
    async def mark(x: int) -> Result[int, str]:
        started[x].set()
        return Success(x)

    tree = mark >> (aio_slow | trio_slow)

    async def main() -> list[Any]:
        tasks = [asyncio.create_task(aio.run(tree, i)) for i in range(3)]
        for event in started.values():
            await event.wait()
        while not {"aio 0", "trio 0"} <= waiting:  # run 0's leaves are in their waits
            await asyncio.sleep(0.001)
        tasks[0].cancel()
        with pytest.raises(asyncio.CancelledError):
            await tasks[0]
        # Both leaves of the cancelled run have finished, before the caller
        # saw CancelledError; the other runs are untouched.
        assert sorted(e for e in log if e.endswith(" 0")) == ["aio end 0", "trio end 0"]
        assert "aio end 1" not in log and "aio end 2" not in log
        assert not tasks[1].done() and not tasks[2].done()
        gate.set()
        return [await tasks[1], await tasks[2]]

    assert run_clean(main) == [Success((1, 1)), Success((2, 2))]


@pytest.mark.parametrize("how", ["wait_for", "timeout"])
def test_asyncio_timeouts_cancel_the_run(how: str) -> None:
    log: list[str] = []

    @aio.agent
    async def hang(x: int) -> Result[int, str]:
        try:
            await asyncio.sleep(60)
            return Success(x)
        finally:
            log.append("aio finally")

    calls = Calls()
    tree = hang | fake("trio_hang", delay=60, calls=calls)

    async def main() -> None:
        with pytest.raises(TimeoutError):
            if how == "wait_for":
                await asyncio.wait_for(aio.run(tree, 1), 0.02)
            else:
                async with asyncio.timeout(0.02):
                    await aio.run(tree, 1)
        assert log == ["aio finally"]
        assert calls.cancelled == [1]

    run_clean(main)


def test_a_timeout_in_the_tree_cancels_an_asyncio_leaf_and_waits_for_its_finally() -> None:
    log: list[str] = []

    @aio.agent
    async def slow(x: int) -> Result[int, str]:
        try:
            await asyncio.sleep(60)
            return Success(x)
        except asyncio.CancelledError:
            log.append("cancelled")
            raise
        finally:
            await asyncio.sleep(0.005)  # cleanup that itself awaits
            log.append("finally")

    async def main() -> Result[int, str | TimedOut]:
        result = await aio.run(slow.timeout(0.02), 1)
        assert log == ["cancelled", "finally"]  # before the Failure came back
        return result

    match run_clean(main):
        case Failure(TimedOut()):
            pass
        case other:
            pytest.fail(f"expected TimedOut, got {other}")


def test_an_asyncio_leaf_frees_its_slot_only_after_its_task_ended() -> None:
    api = PriorityLimiter(1)
    log: list[str] = []

    @aio.agent
    async def slow(x: int) -> Result[int, str]:
        log.append(f"start {x}")
        try:
            await asyncio.sleep(60 if x == 0 else 0)
            return Success(x)
        finally:
            await asyncio.sleep(0.002)
            log.append(f"end {x}")

    async def main() -> None:
        first = asyncio.create_task(aio.run(slow.limit(api).timeout(0.02), 0))
        while not log:
            await asyncio.sleep(0.001)
        # 0 holds the only slot; 1 waits for it until 0's task has ended.
        await asyncio.gather(first, aio.run(slow.limit(api), 1))

    run_clean(main)
    assert log == ["start 0", "end 0", "start 1", "end 1"]


def test_loop_closing_cancels_runs_in_flight_and_leaves_nothing_behind() -> None:
    log: list[str] = []
    entered = 0

    @aio.agent
    async def hang(x: int) -> Result[int, str]:
        nonlocal entered
        entered += 1
        try:
            await asyncio.sleep(60)
            return Success(x)
        finally:
            log.append("aio")

    calls = Calls()
    tree = hang | fake("trio_hang", delay=60, calls=calls)

    async def main() -> None:
        for i in range(5):
            asyncio.create_task(aio.run(tree, i))
        while entered < 5:
            await asyncio.sleep(0.001)
        # return with the runs in flight: asyncio.run cancels them

    run_clean(main)
    assert log == ["aio"] * 5
    assert sorted(calls.cancelled) == list(range(5))


def test_loop_closing_while_idle_and_a_new_loop_after_it() -> None:
    async def main() -> Result[int, str]:
        return await aio.run(aio_double, 2)

    for _ in range(3):
        assert run_clean(main) == Success(4)
    # asyncio.Runner tears down the same way.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with asyncio.Runner() as runner:
            assert runner.run(main()) == Success(4)
            assert runner.run(main()) == Success(4)  # the same loop: the same host
    trio.run(trio.lowlevel.checkpoint)


def test_the_host_restarts_after_its_keeper_was_cancelled() -> None:
    async def main() -> Result[int, str]:
        first = await aio.run(aio_double, 1)
        assert first == Success(2)
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task():
                task.cancel()  # the guest run's keeper: the host shuts down
        during = await aio.run(aio_double, 2)  # waits for the teardown, then starts anew
        assert during == Success(4)
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task():
                task.cancel()
        await asyncio.sleep(0.01)
        return await aio.run(aio_double, 2)  # after it

    assert run_clean(main) == Success(4)


# --------------------------------------------------------------------------
# asyncio leaves are ordinary leaves


def test_asyncio_leaves_retry_limit_and_report_events() -> None:
    attempts = 0
    running = 0
    peak = 0

    @aio.agent
    async def flaky(x: int) -> Result[int, str]:
        nonlocal attempts, running, peak
        attempts += 1
        running += 1
        peak = max(peak, running)
        try:
            await asyncio.sleep(0.001)
        finally:
            running -= 1
        return Failure("busy") if attempts <= 2 else Success(x)

    seen = Recorder()

    async def main() -> Result[list[int], str]:
        return await aio.run(each(flaky.retry(3).limit(2)), [1, 2, 3, 4], observer=seen)

    assert run_clean(main) == Success([1, 2, 3, 4])
    assert peak <= 2
    assert any(e.kind is EventKind.RETRIED for e in seen.events)


def test_asyncio_leaves_are_journaled_and_replayed() -> None:
    calls = 0

    @aio.agent
    async def expensive(x: int) -> Result[int, str]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        return Success(x * 10)

    journal = Journal.memory()
    tree = expensive >> double

    async def main() -> list[Result[int, str]]:
        first = await aio.run(tree, 2, journal=journal, run_id="r1")
        again = await aio.run(tree, 2, journal=journal, run_id="r1")
        return [first, again]

    assert run_clean(main) == [Success(40), Success(40)]
    assert calls == 1  # the second run answered from the journal


# --------------------------------------------------------------------------
# Limiters and windows shared across runs


def test_shared_limiter_equality_is_by_identity_and_plans_are_reused() -> None:
    a, b = PriorityLimiter(2), PriorityLimiter(2)
    assert double.limit(a) == double.limit(a)
    assert hash(double.limit(a)) == hash(double.limit(a))
    assert double.limit(a) != double.limit(b)
    assert double.limit(a) != double.limit(2)
    tree = each(double.limit(a))
    assert run_sync(tree, [1, 2]) == Success([2, 4])
    assert "plan" in node_cache(tree)  # no per-run state: the plan is kept
    per_run = each(double.limit(2))
    run_sync(per_run, [1])
    assert "plan" not in node_cache(per_run)


def test_limit_refuses_other_objects() -> None:
    from combinators import BuildError

    with pytest.raises(BuildError, match="or pass a PriorityLimiter"):
        double.limit("5")  # type: ignore[arg-type]
    with pytest.raises(BuildError, match="per"):
        double.rate(StartWindow(1, 1.0), per=2.0)
    with pytest.raises(ValueError, match="calls"):
        StartWindow(0, 1.0)


async def test_shared_limiter_across_runs_honours_priority(autojump_clock: trio.testing.MockClock) -> None:
    api = PriorityLimiter(1)
    order: list[str] = []

    def job(name: str) -> Agent[int, int, str]:
        async def body(x: int) -> Result[int, str]:
            order.append(name)
            await trio.sleep(1)
            return Success(x)

        body.__name__ = name
        return agent(body)

    holder = job("holder").limit(api)
    low = job("low").limit(api).priority(Priority.LOW)
    high = job("high").limit(api).priority(Priority.HIGH)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, holder, 0)
        await trio.sleep(0.1)  # the holder has the one slot
        nursery.start_soon(run, low, 1)
        await trio.sleep(0.1)
        nursery.start_soon(run, high, 2)  # later, in another run, but more urgent
    assert order == ["holder", "high", "low"]


def test_shared_limiter_used_by_two_trio_runs_at_once_fails_clearly() -> None:
    api = PriorityLimiter(2)
    holding = threading.Event()
    release = threading.Event()

    @agent
    async def hold(x: int) -> Result[int, str]:
        holding.set()
        await trio.to_thread.run_sync(release.wait)
        return Success(x)

    out: list[Result[int, str]] = []
    thread = threading.Thread(target=lambda: out.append(run_sync(hold.limit(api), 1)))
    thread.start()
    try:
        assert holding.wait(10)
        with pytest.raises(RuntimeError, match="another trio run"):
            run_sync(double.limit(api), 2)
    finally:
        release.set()
        thread.join()
    assert out == [Success(1)]
    # Once idle, the limiter serves whichever run comes next.
    assert run_sync(double.limit(api), 2) == Success(4)
    assert api.borrowed == 0


def test_shared_window_spans_runs_each_on_its_own_clock() -> None:
    window = StartWindow(1, 10.0)
    starts: list[float] = []

    @agent
    async def tick(x: int) -> Result[int, str]:
        starts.append(trio.current_time())
        return Success(x)

    tree = tick.rate(window)
    for _ in range(2):
        assert run_sync(tree, 1, clock=trio.testing.MockClock(autojump_threshold=0)) == Success(1)
    # Each run's MockClock starts at 0: the second start waited out what is
    # left of the first run's window on its own clock.
    assert starts[0] == 0
    assert 9.0 < starts[1] <= 10.0
    assert "plan" in node_cache(tree)


def test_shared_limiter_in_a_lift_leaf_and_mermaid_says_shared() -> None:
    from combinators import to_mermaid

    api = PriorityLimiter(1)
    tree = lift(str).limit(api).rate(StartWindow(5, 1.0))
    assert run_sync(tree, 3) == Success("3")
    drawing = str(to_mermaid(tree))
    assert "limit 1 shared" in drawing and "shared" in drawing.split("rate", 1)[1]


def test_a_run_in_flight_when_the_host_is_stopped_under_it_fails_clearly() -> None:
    gate = asyncio.Event()
    entered = asyncio.Event()

    @aio.agent
    async def wait(x: int) -> Result[int, str]:
        entered.set()
        await gate.wait()
        return Success(x)

    async def main() -> None:
        running = asyncio.create_task(aio.run(wait, 1))
        await entered.wait()
        for task in asyncio.all_tasks():
            if task.get_name() == "combinators trio guest run":
                task.cancel()  # someone cancels every task but their own
        with pytest.raises(RuntimeError, match="guest run was stopped"):
            await running
        assert await aio.run(double, 2) == Success(4)  # a new host serves the next call

    run_clean(main)


def test_a_base_exception_from_one_run_reaches_its_caller_and_spares_the_others() -> None:
    class Stop(BaseException):
        pass

    @agent
    async def stop(x: int) -> Result[int, str]:
        raise Stop(x)

    async def main() -> tuple[Result[int, str] | BaseException, Result[int, str] | BaseException]:
        return await asyncio.gather(aio.run(stop, 1), aio.run(double >> aio_double, 1), return_exceptions=True)

    bad, good = run_clean(main)
    assert isinstance(bad, Stop)
    assert good == Success(4)


def test_a_cancelled_caller_cancels_its_asyncio_leaves_in_its_own_loop_turn() -> None:
    cancelled: list[int] = []
    entered: set[int] = set()

    @aio.agent
    async def hang(x: int) -> Result[int, str]:
        entered.add(x)
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(x)
            raise
        return Success(x)

    async def main() -> None:
        tasks = [asyncio.create_task(aio.run(each(hang), [10 * i, 10 * i + 1])) for i in range(3)]
        while len(entered) < 6:
            await asyncio.sleep(0.001)
        tasks[1].cancel()
        turns = 0
        while len(cancelled) < 2 and turns < 3:
            await asyncio.sleep(0)  # one turn of the loop; no trio tick needed
            turns += 1
        assert sorted(cancelled) == [10, 11], (cancelled, turns)
        with pytest.raises(asyncio.CancelledError):
            await tasks[1]
        for t in (tasks[0], tasks[2]):
            assert not t.done()
            t.cancel()
        await asyncio.gather(tasks[0], tasks[2], return_exceptions=True)
        assert sorted(cancelled) == [0, 1, 10, 11, 20, 21]

    run_clean(main)


def test_priorities_hold_across_aio_run_callers_on_one_shared_limiter() -> None:
    api = PriorityLimiter(1)
    order: list[str] = []
    release = asyncio.Event()

    @aio.agent
    async def hold(x: str) -> Result[str, str]:
        order.append(x)
        await release.wait()
        return Success(x)

    @agent
    async def call(x: str) -> Result[str, str]:
        order.append(x)
        await trio.sleep(0)
        return Success(x)

    async def main() -> list[Result[str, str]]:
        holder = asyncio.create_task(aio.run(hold.limit(api), "holder"))
        while not order:
            await asyncio.sleep(0.001)
        low = asyncio.create_task(aio.run(call.limit(api).priority(Priority.LOW), "low"))
        while api.waiting < 1:
            await asyncio.sleep(0.001)
        high = asyncio.create_task(aio.run(call.limit(api).priority(Priority.HIGH), "high"))
        while api.waiting < 2:
            await asyncio.sleep(0.001)
        release.set()
        return list(await asyncio.gather(holder, low, high))

    assert run_clean(main) == [Success("holder"), Success("low"), Success("high")]
    assert order == ["holder", "high", "low"]  # the later, more urgent request first


def test_the_command_line_runs_a_tree_with_asyncio_leaves_through_aio_run() -> None:
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(
        [sys.executable, "-m", "combinators", "run", "tests.aio_agents:quote", "--input", '{"symbol": "AAPL", "qty": 4}'],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == 10.0  # the input was structured to Ask through the bridge
    assert proc.stderr == ""


def test_run_sync_inside_a_loop_that_hosts_aio_run_still_works() -> None:
    tree = each(double) >> pure(sum)

    async def main() -> list[Result[int, str]]:
        first = await aio.run(tree, [1, 2, 3])
        beside = run_sync(tree, [1, 2, 3])  # blocks the loop, but runs (in a thread of its own)
        with pytest.raises(RuntimeError, match="needs an asyncio loop"):
            run_sync(aio_double, 1)
        return [first, beside]

    assert run_clean(main) == [Success(12), Success(12)]


def test_aio_run_takes_a_budget_as_run_does() -> None:
    from combinators import OverBudget, Usage

    def same(x: int) -> int:
        return x

    tree = each(pure(same).costs(Usage(calls=1))).limit(1)
    over = asyncio.run(aio.run(tree, [1, 2, 3], budget=Usage(calls=2)))
    assert isinstance(over, Failure)
    assert isinstance(over.failure(), OverBudget)
    assert asyncio.run(aio.run(tree, [1, 2], budget=Usage(calls=2))) == Success([1, 2])
