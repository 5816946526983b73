"""stream(): outcomes as they finish, lazy inputs, backpressure, no leaks."""

from __future__ import annotations

import functools
import heapq
import itertools
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Never

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from returns.result import Failure, Result, Success

from combinators import Agent, agent, fail, lift, pure, stream
from combinators.testing import Calls, TaskCounter, fake


@agent
async def nap(seconds: int) -> Result[int, str]:
    """Sleeps ``seconds`` of trio time; odd numbers above 100 fail."""
    await trio.sleep(seconds)
    if seconds > 100 and seconds % 2:
        return Failure(f"odd {seconds}")
    return Success(seconds)


def _square(x: int) -> int:
    return x * x


square: Agent[int, int, Never] = pure(_square).named("square")


async def test_outcomes_come_as_they_finish(autojump_clock: trio.testing.MockClock) -> None:
    seen: list[tuple[int, Result[int, str], float]] = []
    start = trio.current_time()
    async with stream(nap, [3, 1, 2, 101], max_concurrency=4) as outcomes:
        async for key, result in outcomes:
            seen.append((key, result, trio.current_time() - start))
    assert seen == [
        (1, Success(1), 1.0),
        (2, Success(2), 2.0),
        (0, Success(3), 3.0),
        (3, Failure("odd 101"), 101.0),
    ]


async def test_keyed_pairs_and_async_iterable_inputs(autojump_clock: trio.testing.MockClock) -> None:
    async def symbols() -> AsyncIterator[tuple[str, int]]:
        for i, name in enumerate(["AAPL", "MSFT", "TSLA"]):
            await trio.sleep(1)
            yield name, i

    async with stream(square, symbols(), keyed=True, max_concurrency=2) as outcomes:
        got = {key: result async for key, result in outcomes}
    assert got == {"AAPL": Success(0), "MSFT": Success(1), "TSLA": Success(4)}

    with pytest.raises(TypeError, match=r"input 0 must be a \(key, input\) pair"):
        async with stream(square, [5], keyed=True) as pairs:  # type: ignore[call-overload]
            async for _ in pairs:
                pass


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 6), max_size=15), st.integers(1, 4))
def test_stream_matches_list_scheduling(delays: list[int], width: int) -> None:
    """Every input once; each arrives at its finish time under list scheduling."""
    free = [0.0] * width
    finish = []
    for d in delays:
        t = heapq.heappop(free)
        heapq.heappush(free, t + d)
        finish.append(t + d)

    async def main() -> list[tuple[int, float]]:
        out = []
        async with stream(nap, delays, max_concurrency=width, buffer=len(delays)) as outcomes:
            async for key, result in outcomes:
                assert result == Success(delays[key])
                out.append((key, trio.current_time()))
        return out

    got = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert sorted(k for k, _ in got) == list(range(len(delays)))
    assert all(t == finish[k] for k, t in got)
    assert [t for _, t in got] == sorted(t for _, t in got)


async def test_max_concurrency_bounds_inputs_in_flight(autojump_clock: trio.testing.MockClock) -> None:
    calls = Calls()
    leaf = fake("work", delay=1.0, fn=_square, calls=calls)
    start = trio.current_time()
    async with stream(leaf, range(1000), max_concurrency=50) as outcomes:
        total = sum([r.unwrap() async for _, r in outcomes])
    assert total == sum(x * x for x in range(1000))
    assert calls.peak == 50
    assert trio.current_time() - start == 20.0


async def test_slow_reader_stops_new_work(autojump_clock: trio.testing.MockClock) -> None:
    """Backpressure: no more than workers + buffer outcomes ahead of the reader."""
    pulled = 0

    def inputs() -> Iterator[int]:
        nonlocal pulled
        for i in itertools.count():
            pulled += 1
            yield i

    async with stream(square, inputs(), max_concurrency=4, buffer=3) as outcomes:
        read = 0
        async for _ in outcomes:
            read += 1
            await trio.sleep(10)  # a slow consumer
            # 3 waiting in the channel, 4 workers each holding one outcome.
            assert pulled <= read + 3 + 4 + 1
            if read == 20:
                break
    assert pulled <= 20 + 3 + 4 + 1


async def test_breaking_out_leaves_no_task_running(autojump_clock: trio.testing.MockClock) -> None:
    calls = Calls()
    leaf = fake("work", delay=1.0, fn=_square, calls=calls)
    counter = TaskCounter()
    trio.lowlevel.add_instrument(counter)
    try:
        async with stream(leaf, itertools.count(), max_concurrency=1000) as outcomes:
            got = 0
            async for _ in outcomes:
                got += 1
                if got == 10:
                    break
            assert counter.alive == 1000  # the workers, still running
        assert counter.alive == 0  # nothing outlives the `async with`
    finally:
        trio.lowlevel.remove_instrument(counter)
    assert len(calls.cancelled) > 0
    assert len(calls.started) == len(calls.finished) + len(calls.cancelled)


async def test_outer_cancel_scope_stops_the_stream(autojump_clock: trio.testing.MockClock) -> None:
    counter = TaskCounter()
    trio.lowlevel.add_instrument(counter)
    try:
        with trio.move_on_after(5.5) as scope:
            async with stream(nap, itertools.repeat(1), max_concurrency=3) as outcomes:
                async for _ in outcomes:
                    pass
        assert scope.cancelled_caught
        assert counter.alive == 0
    finally:
        trio.lowlevel.remove_instrument(counter)


async def test_exceptions_leave_as_themselves(autojump_clock: trio.testing.MockClock) -> None:
    def crash(x: int) -> int:
        if x == 3:
            raise KeyError("bug in the agent")
        return x

    with pytest.raises(KeyError, match="bug in the agent") as info:
        async with stream(pure(crash), range(10), max_concurrency=2) as outcomes:
            async for _ in outcomes:
                pass
    assert any("crash[3]" in note for note in info.value.__notes__)

    with pytest.raises(ValueError, match="reader's own"):
        async with stream(square, range(10)) as outcomes:
            async for _ in outcomes:
                raise ValueError("the reader's own error")

    def broken() -> Iterator[int]:
        yield 1
        raise RuntimeError("input broke")

    with pytest.raises(RuntimeError, match="input broke"):
        async with stream(square, broken()) as outcomes:
            async for _ in outcomes:
                pass

    # Expected failures are values, never exceptions.
    async with stream(lift(functools.partial(divmod, 1)), [1, 0]) as divided:
        results = dict([kr async for kr in divided])
    assert isinstance(results[1], Failure) and results[0] == Success((1, 0))


async def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="max_concurrency"):
        stream(square, [1], max_concurrency=0)
    with pytest.raises(ValueError, match="buffer"):
        stream(square, [1], buffer=-1)
    with pytest.raises(TypeError, match="iterable"):
        stream(square, 5)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="expects an Agent"):
        stream(_square, [1])  # type: ignore[call-overload]
    async with stream(fail("x"), []) as outcomes:
        assert [r async for r in outcomes] == []


def test_memory_benchmark_runs_small() -> None:
    """The benchmark script works end to end (the 1,000,000 run is in benchmarks/).

    In a subprocess: ``ru_maxrss`` is the peak of the whole process, which in
    the test session is the peak of every earlier test.
    """
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.stream_memory", "20000", "100"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "20,000 outcomes of 20,000 inputs at max_concurrency=100" in proc.stdout
    assert "under the 150 MB bar" in proc.stdout


class _Halt(BaseException):
    """Not an Exception and not a cancellation, like KeyboardInterrupt."""


def test_a_base_exception_from_an_agent_always_comes_out() -> None:
    """Never swallowed by the cancellation that follows it (trio orders tasks randomly: repeat)."""

    async def halt(x: int) -> Result[int, str]:
        await trio.sleep(1)
        raise _Halt(x)

    async def main() -> None:
        async with stream(agent(halt), [1, 2, 3], max_concurrency=2) as outcomes:
            async for _ in outcomes:
                pass

    for _ in range(20):
        with pytest.raises(_Halt):
            trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
