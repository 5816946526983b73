"""Timeouts, retries, limits, priorities and rate windows (issue 3)."""

from __future__ import annotations

import itertools
import random
from datetime import timedelta
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
    Backoff,
    BuildError,
    EventKind,
    Priority,
    PriorityLimiter,
    Recorder,
    TimedOut,
    agent,
    run,
)
from combinators._expr import Limit
from combinators.testing import Calls, agent_trees, fake, run_virtual

# -- timeout ---------------------------------------------------------------------------


async def test_timeout_cancels_the_leaf_and_frees_its_slot(
    autojump_clock: trio.testing.MockClock,
) -> None:
    reached: list[bool] = []

    @agent
    async def paid_call(x: int) -> Result[int, str]:
        await trio.sleep(100)
        reached.append(True)  # the line after the checkpoint never runs
        return Success(x)

    tree = paid_call.limit(1).timeout(5).named("guarded")
    start = trio.current_time()
    result = await run(tree, 1)
    assert result == Failure(TimedOut("guarded", 5.0))
    assert trio.current_time() - start == 5
    assert reached == []
    # the slot is free again: a second run under the same shape is admitted at once
    assert await run(tree | fake("quick", delay=1, value=2), 0) == Failure(TimedOut("par/guarded", 5.0))
    # the slot is free again at once: a fallback under the same limit(1) gets it
    rescued = paid_call.timeout(5).fallback(fake("quick", delay=1, value=2)).limit(1)
    start = trio.current_time()
    with trio.fail_after(60):
        assert await run(rescued, 1) == Success(2)
    assert trio.current_time() - start == 6


async def test_timeout_returns_result_when_in_time(autojump_clock: trio.testing.MockClock) -> None:
    assert await run(fake("f", delay=2, value="ok").timeout(2.5), 0) == Success("ok")


async def test_timeout_inside_a_group_fails_fast(autojump_clock: trio.testing.MockClock) -> None:
    calls = Calls()
    slow = fake("slow", delay=10, value=1, calls=calls)
    tree = slow.timeout(1).named("t") | slow
    assert await run(tree, 0) == Failure(TimedOut("par/t", 1.0))
    assert calls.finished == []
    assert len(calls.cancelled) == 2


# -- retry -----------------------------------------------------------------------------


@attrs.define
class Flaky:
    """Fails ``failures`` times, then succeeds; records attempt times."""

    failures: int
    error: Any = "flaky"
    times: list[float] = attrs.Factory(list)

    def agent(self) -> Agent[int, int, Any]:
        async def flaky(x: int) -> Result[int, Any]:
            self.times.append(trio.current_time())
            await trio.sleep(1)
            if len(self.times) <= self.failures:
                return Failure(self.error)
            return Success(x)

        return agent(flaky)


async def test_retry_waits_exponential_backoff(autojump_clock: trio.testing.MockClock) -> None:
    flaky = Flaky(failures=3)
    tree = flaky.agent().retry(5, backoff=Backoff(base=1, factor=2, cap=3))
    start = trio.current_time()
    assert await run(tree, 7) == Success(7)
    gaps = [b - a for a, b in zip(flaky.times, flaky.times[1:], strict=False)]
    # each attempt takes 1s, then waits 1, 2, 3 (capped)
    assert gaps == [2.0, 3.0, 4.0]
    assert trio.current_time() - start == 10


async def test_retry_gives_up_with_the_last_error(autojump_clock: trio.testing.MockClock) -> None:
    flaky = Flaky(failures=10)
    recorder = Recorder()
    assert await run(flaky.agent().retry(2, backoff=Backoff(base=0)), 0, observer=recorder) == Failure("flaky")
    assert len(flaky.times) == 3
    retried = [e for e in recorder.events if e.kind is EventKind.RETRIED]
    assert [e.attempt for e in retried] == [2, 3]
    assert [e.error for e in retried] == ["flaky", "flaky"]


async def test_retry_predicate_and_deadline(autojump_clock: trio.testing.MockClock) -> None:
    fatal = Flaky(failures=10, error="fatal")
    tree = fatal.agent().retry(5, when=lambda e: e != "fatal")
    assert await run(tree, 0) == Failure("fatal")
    assert len(fatal.times) == 1
    slow = Flaky(failures=10)
    bounded = slow.agent().retry(100, backoff=Backoff(base=1, factor=1), deadline=6)
    await run(bounded, 0)
    # attempts start at 0, 2, 4; the next would start at 6 + 1 > 6 after its wait
    assert slow.times == [0.0 + slow.times[0], 2 + slow.times[0], 4 + slow.times[0]]


@attrs.frozen
class RateLimited:
    retry_after: float


async def test_retry_respects_retry_after_hints(autojump_clock: trio.testing.MockClock) -> None:
    flaky = Flaky(failures=1, error=RateLimited(retry_after=30))
    tree = flaky.agent().retry(1, backoff=Backoff(base=1))
    assert await run(tree, 3) == Success(3)
    assert flaky.times[1] - flaky.times[0] == 31  # 1s attempt + 30s hint (> 1s backoff)


def test_jitter_is_seedable_and_bounded() -> None:
    backoff = Backoff(base=2, factor=2, cap=10, jitter=0.5, seed=42)
    first = [backoff.delay(k, rng) for rng in [backoff.rng()] for k in range(1, 6)]
    second = [backoff.delay(k, rng) for rng in [backoff.rng()] for k in range(1, 6)]
    assert first == second
    plain = [Backoff(base=2, factor=2, cap=10).delay(k) for k in range(1, 6)]
    assert plain == [2, 4, 8, 10, 10]
    assert all(p / 2 <= j <= p for j, p in zip(first, plain, strict=True))
    assert first != plain


# -- limits --------------------------------------------------------------------------------


Group = tuple[int, list[Calls]]  # a limit and the Calls of the leaves under it


#: The calls of every counted leaf, by name (names are unique).
CALLS: dict[str, Calls] = {}
_ids = itertools.count()


@st.composite
def counted(draw: st.DrawFn) -> Agent[Any, Any, Any]:
    """A leaf of 1 to 4 seconds whose :class:`Calls` are in :data:`CALLS`."""
    name = f"leaf{next(_ids)}"
    calls = CALLS[name] = Calls()
    return fake(name, delay=draw(st.integers(1, 4)), value=0, calls=calls)


def side_by_side(trees: list[Agent[Any, Any, Any]]) -> Agent[Any, Any, Any]:
    """One ``|`` group of ``trees`` (the tree itself when there is one)."""
    group = trees[0]
    for tree in trees[1:]:
        group = group | tree
    return group


#: Random ``|`` groups of up to five under random nested ``.limit(n)``, from
#: the one tree strategy; up to five of them side by side, so that some
#: trees have a few dozen leaves competing for the limits.
limited_trees = st.lists(
    agent_trees(max_leaves=16, leaves=counted(), kinds=("parallel", "limit_n"), max_width=5), min_size=1, max_size=5
).map(side_by_side)


def groups(tree: Agent[Any, Any, Any]) -> list[Group]:
    """Each limit of ``tree`` and the calls of the leaves under it."""
    return [
        (node.n, [CALLS[leaf.name] for leaf in node.walk() if leaf.kind == "leaf"])
        for node in tree.walk()
        if isinstance(node, Limit)
    ]


@settings(max_examples=60, deadline=None)
@given(limited_trees, st.integers(1, 6))
def test_nested_limits_always_hold(tree: Agent[Any, Any, Any], run_limit: int) -> None:
    limits = groups(tree)
    peaks = [0] * len(limits)

    class Watch(trio.abc.Instrument):
        def before_task_step(self, task: trio.lowlevel.Task) -> None:
            for i, (_, calls) in enumerate(limits):
                peaks[i] = max(peaks[i], sum(c.running for c in calls))

    async def main() -> None:
        trio.lowlevel.add_instrument(Watch())
        await run(tree, 0, max_concurrency=run_limit)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    for i, (n, calls) in enumerate(limits):
        assert peaks[i] <= n
        assert peaks[i] <= run_limit
        # with enough leaves and no tighter limit inside or above, the limit is reached
        tighter = any(
            m < n and ({id(c) for c in cs} <= {id(c) for c in calls} or {id(c) for c in calls} <= {id(c) for c in cs})
            for j, (m, cs) in enumerate(limits)
            if j != i
        )
        total_leaves = sum(1 for node in tree.walk() if not node.children())
        if len(calls) >= n and total_leaves <= run_limit and not tighter:
            assert peaks[i] == n


async def test_limit_one_over_a_group_turns_max_into_sum(
    autojump_clock: trio.testing.MockClock,
) -> None:
    group = fake("a", delay=2, value=1) | fake("b", delay=3, value=2) | fake("c", delay=4, value=3)
    start = trio.current_time()
    assert await run(group.limit(1), 0) == Success((1, 2, 3))
    assert trio.current_time() - start == 9
    start = trio.current_time()
    assert await run(group, 0, max_concurrency=2) == Success((1, 2, 3))
    assert trio.current_time() - start in (5, 6)  # depends on which two start first


# -- priorities -----------------------------------------------------------------------------


async def test_tree_leaves_wait_in_priority_order(autojump_clock: trio.testing.MockClock) -> None:
    order: list[Priority] = []

    def leaf(level: Priority) -> Agent[Any, Any, Any]:
        async def body(x: Any) -> Result[Any, Any]:
            order.append(level)
            await trio.sleep(1)
            return Success(level)

        body.__name__ = level.name.lower()
        return agent(body).priority(level)

    levels = [Priority.LOW, Priority.CRITICAL, Priority.NORMAL, Priority.HIGH, Priority.LOW]
    tree: Agent[Any, Any, Any] = leaf(levels[0])
    for level in levels[1:]:
        tree = tree | leaf(level)
    for _ in range(10):  # trio runs same-instant tasks in a random order
        order.clear()
        assert await run(tree.limit(1), None) == Success(tuple(levels))
        # All five ask at the same instant: every one of them, the first
        # included, is admitted by priority (the two LOWs in either order).
        assert order == sorted(levels, reverse=True)


async def test_one_priority_takes_a_free_slot_without_yielding() -> None:
    limiter = PriorityLimiter(2)
    limiter.note(Priority.NORMAL)
    seen: list[str] = []

    async def other() -> None:
        seen.append("other")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other)
        await limiter.acquire()
        seen.append("me")  # no schedule point in acquire: before `other` runs
    assert seen == ["me", "other"]


async def test_mixed_priorities_asking_in_one_round_are_admitted_by_priority() -> None:
    """Whatever order trio runs one round's tasks in, the higher priority gets the free slot."""
    for _ in range(20):
        limiter = PriorityLimiter(1)
        limiter.note(Priority.LOW)
        limiter.note(Priority.HIGH)
        admitted: list[Priority] = []

        async def ask(level: Priority) -> None:
            await limiter.acquire(level)
            admitted.append(level)
            await trio.sleep(0)
            limiter.release()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask, Priority.LOW)
            nursery.start_soon(ask, Priority.HIGH)
        assert admitted == [Priority.HIGH, Priority.LOW]


async def test_limiter_admits_by_priority_then_arrival(autojump_clock: trio.testing.MockClock) -> None:
    limiter = PriorityLimiter(1)
    admitted: list[str] = []
    rng = random.Random(1234)
    levels = [rng.choice(list(Priority)) for _ in range(30)]

    async def worker(tag: str, priority: Priority) -> None:
        await limiter.acquire(priority)
        admitted.append(tag)
        await trio.sleep(1)
        limiter.release()

    async with trio.open_nursery() as nursery:
        await limiter.acquire()
        for i, level in enumerate(levels):
            nursery.start_soon(worker, f"{i:02d}", level)
            await trio.sleep(0.01)  # arrive one after another
        limiter.release()
    expected = sorted((f"{i:02d}" for i in range(30)), key=lambda tag: (-levels[int(tag)], tag))
    # aging (64 admissions per level) never kicks in with only 30 waiters
    assert admitted == expected


async def _position_of_low(aging: int) -> int:
    """Where a LOW request lands under a stream of CRITICAL ones (limit 1)."""
    limiter = PriorityLimiter(1, aging=aging)
    admitted: list[str] = []

    async def worker(tag: str, priority: Priority) -> None:
        await limiter.acquire(priority)
        admitted.append(tag)
        await trio.sleep(1)
        limiter.release()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker, "crit-first", Priority.CRITICAL)
        await trio.sleep(0.1)
        nursery.start_soon(worker, "low", Priority.LOW)
        for i in range(60):  # a new CRITICAL request every half second
            await trio.sleep(0.5)
            nursery.start_soon(worker, f"crit{i}", Priority.CRITICAL)
    return admitted.index("low")


async def test_low_priority_is_not_starved(autojump_clock: trio.testing.MockClock) -> None:
    # LOW gains a level per 4 admissions; CRITICAL work that arrives more than
    # 3 * 4 admissions after it can no longer overtake it, so it gets in long
    # before the stream ends
    position = await _position_of_low(aging=4)
    assert 3 <= position <= 30
    # without aging the same LOW request waits for every CRITICAL one: last
    assert await _position_of_low(aging=10**9) == 61


async def test_cancelled_waiter_leaves_the_queue(autojump_clock: trio.testing.MockClock) -> None:
    limiter = PriorityLimiter(1)
    got: list[str] = []
    await limiter.acquire()

    async def waiter(tag: str, scope: trio.CancelScope) -> None:
        with scope:
            await limiter.acquire(Priority.HIGH)
            got.append(tag)
            limiter.release()

    gone, kept = trio.CancelScope(), trio.CancelScope()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter, "gone", gone)
        await trio.sleep(0.1)
        nursery.start_soon(waiter, "kept", kept)
        await trio.sleep(0.1)
        assert limiter.waiting == 2
        gone.cancel()
        await trio.sleep(0.1)
        assert limiter.waiting == 1
        limiter.release()  # must go to "kept", not to the cancelled waiter
    assert got == ["kept"]
    assert limiter.borrowed == 0


# -- rate -----------------------------------------------------------------------------------


async def test_rate_window_spaces_starts(autojump_clock: trio.testing.MockClock) -> None:
    starts: list[float] = []

    @agent
    async def call(x: int) -> Result[int, str]:
        starts.append(trio.current_time())
        await trio.sleep(0.01)
        return Success(x)

    tree: Agent[int, Any, str] = call
    for _ in range(99):
        tree = tree | call
    begin = trio.current_time()
    assert isinstance(await run(tree.rate(10, per=1.0), 0), Success)
    rel = sorted(t - begin for t in starts)
    assert len(rel) == 100
    assert rel[-1] >= 9
    for i in range(len(rel) - 10):
        assert rel[i + 10] - rel[i] >= 1.0  # never more than 10 starts in any 1s window


async def test_rate_weight_takes_several_tokens(autojump_clock: trio.testing.MockClock) -> None:
    starts: list[float] = []

    @agent
    async def call(tokens: int) -> Result[int, str]:
        starts.append(trio.current_time())
        return Success(tokens)

    tree = (call | call | call | call).rate(10, per=60, weight=lambda tokens: tokens)
    begin = trio.current_time()
    assert await run(tree, 4) == Success((4, 4, 4, 4))
    assert sorted(t - begin for t in starts) == [0, 0, 60, 60]


# -- cost model with limits and timeouts ---------------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(1, 5), min_size=1, max_size=6), st.sampled_from([0.5, 2.5, 6.5, 100.5]))
def test_timeout_is_min_of_time_and_limit(delays: list[int], seconds: float) -> None:
    group: Agent[Any, Any, Any] = fake("l0", delay=delays[0], value=0)
    for i, d in enumerate(delays[1:], 1):
        group = group | fake(f"l{i}", delay=d, value=i)
    result, elapsed = run_virtual(group.limit(1).timeout(seconds), None)
    total = sum(delays)
    assert elapsed == min(total, seconds)
    assert isinstance(result, Success) == (total < seconds)


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda a: a.timeout(0), "timeout\\(\\): the timeout must be a number of seconds or a timedelta > 0, got 0"),
        (lambda a: a.timeout(-1), "timeout must be a number of seconds or a timedelta > 0"),
        (lambda a: a.timeout(timedelta(0)), "timeout must be a number of seconds or a timedelta > 0, got 0.0"),
        (lambda a: a.retry(-1), "retry\\(\\): times must be an int >= 0, got -1"),
        (lambda a: a.limit(0), "limit\\(\\): n must be an int >= 1, got 0"),
        (lambda a: a.rate(0, per=1), "rate\\(\\): calls must be a finite number > 0"),
        (lambda a: a.rate(1, per=0), "per must be a number of seconds or a timedelta > 0"),
        (lambda a: a.priority(3), "expected a Priority"),
        (lambda a: a.retry(1, deadline=0), "deadline must be a number of seconds or a timedelta > 0"),
    ],
)
def test_bad_arguments_are_refused_at_build_time(build: Any, message: str) -> None:
    leaf = fake("call", value=1).named("call")
    with pytest.raises(BuildError, match=message) as info:
        build(leaf)
    assert "call" in str(info.value)


def test_bad_backoff_is_refused() -> None:
    with pytest.raises(BuildError, match="Backoff.base"):
        Backoff(base=-1)
    with pytest.raises(BuildError, match="jitter"):
        Backoff(jitter=2)


async def test_an_already_cancelled_acquire_takes_no_slot() -> None:
    limiter = PriorityLimiter(1)
    with trio.CancelScope() as scope:
        scope.cancel()
        await limiter.acquire()
    assert scope.cancelled_caught
    assert limiter.borrowed == 0


def test_backoff_far_past_the_cap_is_the_cap() -> None:
    """factor ** k overflows a float long before anyone retries that often."""
    backoff = Backoff(base=0.01, factor=2, cap=5)
    assert backoff.delay(2_000) == 5.0
    assert Backoff(base=1, factor=10.0, cap=3).delay(400) == 3.0


def test_durations_may_be_timedeltas() -> None:
    """Rust's ``Duration`` is Python's ``timedelta``: every time argument takes one."""
    from combinators import each, first_success

    slow = fake("slow", delay=5, value=1)
    assert run_virtual(slow.timeout(timedelta(seconds=2)), 0) == (Failure(TimedOut("slow.timeout", 2.0)), 2.0)
    flaky = fake("flaky", delay=1, error="e").retry(5, backoff=Backoff(base=1, factor=1), deadline=timedelta(seconds=3))
    assert run_virtual(flaky, 0)[1] == 3.0  # attempts start at 0 and 2; one at 4 would be past the deadline
    paced = each(fake("x", delay=0, value=1).rate(1, per=timedelta(seconds=2)))
    assert run_virtual(paced, [0, 0, 0])[1] == 4.0
    hedged = first_success(fake("a", delay=5, value="a"), fake("b", delay=1, value="b"), hedge=timedelta(seconds=1))
    assert run_virtual(hedged, 0) == (Success("b"), 2.0)


async def test_a_request_cancelled_while_gathering_takes_no_slot() -> None:
    """A cancel that lands in the round the gatherer waits through must not let the leaf run."""
    for _ in range(20):  # trio orders the two tasks randomly; about half hit the window
        limiter = PriorityLimiter(1)
        limiter.note(Priority.LOW)
        limiter.note(Priority.HIGH)
        ran: list[str] = []
        scope = trio.CancelScope()

        async def asker() -> None:
            with scope:
                await limiter.acquire(Priority.HIGH)
                ran.append("ran")
                limiter.release()

        async def canceller() -> None:
            scope.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(asker)
            nursery.start_soon(canceller)
        assert ran == []
        assert limiter.borrowed == 0 and limiter.waiting == 0


# -- hardening (issue 15) ----------------------------------------------------------------------


@pytest.mark.parametrize("bad", [-1, -0.5, float("inf"), float("-inf"), float("nan"), True, "3", None, 10**400])
async def test_a_bad_rate_weight_is_an_error_naming_the_node_and_the_function(
    autojump_clock: trio.testing.MockClock, bad: object
) -> None:
    """A weight that is not a finite number >= 0 is refused before it reaches the window."""
    from combinators import each

    def tokens(x: int) -> Any:
        return bad if x == 3 else 1

    starts: list[float] = []

    @agent
    async def call(x: int) -> Result[int, str]:
        starts.append(trio.current_time())
        return Success(x)

    tree = each(call).rate(10, per=0.5, weight=tokens).named("paced")
    with pytest.raises(ValueError, match=r"weight function 'tokens' of rate node 'paced' gave .* for the leaf at '[^']*3\]") as info:
        await run(tree, list(range(20)))
    assert "finite number >= 0" in str(info.value)


async def test_a_bad_weight_never_corrupts_the_window(autojump_clock: trio.testing.MockClock) -> None:
    """After a refused nan/inf/negative weight, 20 normal starts still take about one second, not ten."""
    from combinators._limits import StartWindow

    window = StartWindow(10, 0.5, name="paced")
    for bad in (float("nan"), float("inf"), -5.0, True):
        with pytest.raises(ValueError, match="paced"):
            await window.take(bad)
    begin = trio.current_time()
    for _ in range(20):
        await window.take(1.0)
    assert trio.current_time() - begin == 0.5  # two windows of ten


async def test_zero_weights_pass_and_an_exception_in_the_weight_function_is_noted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from combinators import each

    free = each(fake("call", value=1)).rate(1, per=10, weight=lambda x: 0)
    begin = trio.current_time()
    assert await run(free, list(range(5))) == Success([1] * 5)
    assert trio.current_time() == begin

    def weigh(x: int) -> float:
        raise KeyError(x)

    tree = each(fake("call", value=1)).rate(1, per=10, weight=weigh)
    with pytest.raises(KeyError) as info:
        await run(tree, [7])
    (note,) = [n for n in info.value.__notes__ if "combinators" in n]
    assert note.startswith("combinators: raised by the weight function 'weigh' of node ")
    assert "call" in note  # the leaf whose input was weighed


async def test_an_exception_in_a_retry_predicate_is_noted(autojump_clock: trio.testing.MockClock) -> None:
    def transient(error: str) -> bool:
        raise LookupError(error)

    tree = fake("call", error="e").named("call").retry(2, when=transient)
    with pytest.raises(LookupError) as info:
        await run(tree, 0)
    assert [n for n in info.value.__notes__ if "combinators" in n] == [
        "combinators: raised by the when function 'transient' of node 'call.retry'"
    ]


@pytest.mark.parametrize("on", [EventKind.STARTED, EventKind.SUCCEEDED, EventKind.FAILED])
async def test_an_exception_in_an_observer_is_noted_as_the_observers(
    autojump_clock: trio.testing.MockClock, on: EventKind
) -> None:
    class Fussy:
        def __call__(self, event: Any) -> None:
            if event.kind is on and event.node == "leaf":
                raise RuntimeError("observer broke")

    value = 1 if on is not EventKind.FAILED else None
    error = "no" if on is EventKind.FAILED else None
    leaves = [fake("call", value=value, error=error), agent_leaf(error)]
    for leaf in leaves:
        for tree in (leaf.named("call"), leaf.named("call").limit(1)):
            with pytest.raises(RuntimeError, match="observer broke") as info:
                await run(tree, 0, observer=Fussy())
            (note,) = [n for n in info.value.__notes__ if "combinators" in n]
            assert note.startswith("combinators: raised by the observer function 'Fussy' of node '")
            assert note.endswith("call'")  # the leaf's path, which the event carried


def agent_leaf(error: str | None = None) -> Agent[int, int, str]:
    @agent
    async def plain(x: int) -> Result[int, str]:
        return Success(x) if error is None else Failure(error)

    return plain


def test_priority_limiter_release_without_acquire_raises() -> None:
    limiter = PriorityLimiter(1)
    with pytest.raises(RuntimeError, match="without a matching acquire"):
        limiter.release()
    assert limiter.borrowed == 0
    assert limiter.try_acquire()
    assert not limiter.try_acquire()  # still one slot, not two


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((2.5,), {}, "total must be an int >= 1, got 2.5"),
        ((True,), {}, "total must be an int >= 1, got True"),
        ((0,), {}, "total must be an int >= 1, got 0"),
        ((float("inf"),), {}, "total must be an int >= 1"),
        ((1,), {"aging": 0}, "aging must be an int >= 1, got 0"),
        ((1,), {"aging": 0.5}, "aging must be an int >= 1"),
        ((1,), {"aging": False}, "aging must be an int >= 1"),
    ],
)
def test_priority_limiter_refuses_bad_sizes(args: tuple[Any, ...], kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(BuildError, match=message):
        PriorityLimiter(*args, **kwargs)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda a: a.timeout(10**400), "timeout must be a finite number of seconds > 0"),
        (lambda a: a.timeout(10**5000), "timeout must be a finite number of seconds > 0, got an int of"),
        (lambda a: a.timeout(float("inf")), "timeout must be a finite number of seconds > 0, got inf"),
        (lambda a: a.timeout(float("nan")), "got nan"),
        (lambda a: a.timeout(True), "got True"),
        (lambda a: a.timeout("1"), "got '1'"),
        (lambda a: a.retry(1, deadline=float("inf")), "deadline must be a finite number"),
        (lambda a: a.retry(True), "times must be an int >= 0, got True"),
        (lambda a: a.retry(1.0), "times must be an int >= 0, got 1.0"),
        (lambda a: a.limit(2.5), "n must be an int >= 1, got 2.5"),
        (lambda a: a.limit(True), "n must be an int >= 1, got True"),
        (lambda a: a.rate(float("inf")), "calls must be a finite number > 0, got inf"),
        (lambda a: a.rate(float("nan")), "calls must be a finite number > 0, got nan"),
        (lambda a: a.rate(10**400), "calls must be a finite number > 0"),
        (lambda a: a.rate(True), "calls must be a finite number > 0, got True"),
        (lambda a: a.rate(1, per=float("inf")), "per must be a finite number of seconds"),
        (lambda a: a.rate(1, per=10**400), "per must be a finite number of seconds"),
    ],
)
def test_non_finite_huge_and_bool_arguments_are_build_errors(build: Any, message: str) -> None:
    leaf = fake("call", value=1).named("call")
    with pytest.raises(BuildError, match=message) as info:
        build(leaf)
    assert "call" in str(info.value)
    assert len(str(info.value)) < 200  # a 400-digit number is not printed whole


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"base": "1"}, "Backoff.base must be a finite number >= 0, got '1'"),
        ({"base": float("inf")}, "Backoff.base must be a finite number >= 0, got inf"),
        ({"cap": float("nan")}, "Backoff.cap must be a finite number >= 0, got nan"),
        ({"cap": 10**400}, "Backoff.cap must be a finite number >= 0"),
        ({"factor": 0}, "Backoff.factor must be a finite number > 0, got 0"),
        ({"factor": True}, "Backoff.factor must be a finite number > 0, got True"),
        ({"jitter": None}, "Backoff.jitter must be a finite number >= 0, got None"),
        ({"seed": 1.5}, "Backoff.seed must be an int, a str or None, got 1.5"),
    ],
)
def test_bad_backoff_fields_are_build_errors_naming_the_field(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(BuildError, match=message):
        Backoff(**kwargs)


def test_rate_docs_describe_the_sliding_log_the_code_runs() -> None:
    """The docstring once said "a token bucket"; the window is a sliding log (issue 15)."""
    from combinators._limits import StartWindow

    doc = Agent.rate.__doc__ or ""
    assert "sliding log" in doc and "sliding log" in (StartWindow.__doc__ or "")
    assert "(a token bucket)" not in doc



@pytest.mark.parametrize("bad", [0, -1, 2.5, True, float("inf"), float("nan"), "4"])
async def test_max_concurrency_of_run_and_stream_is_a_whole_number(bad: Any) -> None:
    from combinators import stream

    leaf = fake("call", value=1)
    with pytest.raises(ValueError, match="max_concurrency must be an int >= 1"):
        await run(leaf, 0, max_concurrency=bad)
    with pytest.raises(ValueError, match="max_concurrency must be an int >= 1"):
        stream(leaf, [0], max_concurrency=bad)
    assert await run(leaf, 0, max_concurrency=10**400) == Success(1)  # huge is fine: an int
