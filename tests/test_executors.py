"""Leaves on worker processes (trio-parallel): real processes, no mocks.

Worker functions live at module level so that they pickle by reference;
the spawned workers import this module from the same ``sys.path``.
Tests about cancellation and pools use real time (they are about
processes), each bounded with ``trio.fail_after``.
"""

from __future__ import annotations

import os
import pickle
import sys
import threading
import time
from pathlib import Path
from typing import Any, Never

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from returns.result import Failure, Result, Success

from combinators import (
    Agent,
    AgentTypeError,
    BuildError,
    Crashed,
    Executor,
    Priority,
    ProcessPool,
    Recorder,
    RemoteError,
    TimedOut,
    agent,
    fail,
    in_task,
    lift,
    processes,
    pure,
    remote_traceback,
    run,
)
from combinators._processes import _process_dumps

# A shared pool for most tests: workers are cached between runs, so only
# the first test pays for starting them.
POOL = processes(2)


# -- functions run in workers ----------------------------------------------------


def pid(_: object) -> int:
    return os.getpid()


def square_sum(n: int) -> int:
    return sum(i * i for i in range(n))


def inc(x: int) -> int:
    return x + 1


def double(x: int) -> int:
    return x * 2


def boom(x: int) -> int:
    raise ValueError(f"bad input {x}")


class Unpicklable(Exception):
    def __init__(self, lock: Any) -> None:
        super().__init__("holds a lock")
        self.lock = lock

    def __reduce__(self) -> Any:
        raise TypeError("cannot pickle Unpicklable")


def raise_unpicklable(_: object) -> int:
    raise Unpicklable(threading.Lock())


def spin_forever(path: str) -> int:
    """Write the worker's pid, then burn CPU for 60 seconds."""
    Path(path).write_text(str(os.getpid()))
    end = time.monotonic() + 60
    while time.monotonic() < end:
        pass
    return 0


def nap(seconds: float) -> tuple[float, float]:
    """Sleep in the worker; give the (wall-clock) start and end."""
    start = time.time()
    time.sleep(seconds)
    return (start, time.time())


# -- helpers -----------------------------------------------------------------


def _alive(pid_: int) -> bool:
    """Is the process still there (a zombie waiting to be reaped counts as gone)?"""
    try:
        state = Path(f"/proc/{pid_}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


async def _gone_within(pid_: int, seconds: float) -> bool:
    with trio.move_on_after(seconds):
        while _alive(pid_):
            await trio.sleep(0.05)
        return True
    return False


async def _assert_killed(
    agent_: Agent[str, Any, Any], path: Path, expect: object, cancelled_at: list[float]
) -> None:
    """Run ``agent_`` whose leaf is ``spin_forever``; it must stop fast, worker killed."""
    with trio.fail_after(60):
        result = await run(agent_, str(path))
    took = trio.current_time() - cancelled_at[0]
    assert result == expect
    assert took < 3, f"the cancelled leaf took {took:.1f}s to stop"
    worker = int(path.read_text())
    assert worker != os.getpid()
    assert await _gone_within(worker, 3.0), f"worker {worker} still alive"


# -- results -----------------------------------------------------------------


async def test_pure_leaf_runs_in_another_process() -> None:
    with trio.fail_after(30):
        result = await run(pure(pid).on(POOL), None)
    assert isinstance(result, Success)
    assert result.unwrap() != os.getpid()


async def test_values_through_combinators_match_in_process() -> None:
    tree = pure(inc) >> (pure(double) | pure(square_sum)) >> pure(lambda t: t[0] + t[1])
    moved = (pure(inc) >> (pure(double) | pure(square_sum))).on(POOL) >> pure(lambda t: t[0] + t[1])
    with trio.fail_after(30):
        assert await run(moved, 10) == await run(tree, 10) == Success(22 + sum(i * i for i in range(11)))


async def test_async_leaves_stay_in_the_trio_task() -> None:
    @agent
    async def here(x: int) -> Result[int, str]:
        await trio.sleep(0)
        return Success(os.getpid())

    tree = (here >> pure(pid) | here).on(POOL)
    with trio.fail_after(30):
        result = await run(tree, 0)
    remote, local = result.unwrap()
    assert local == os.getpid() != remote


async def test_in_task_brings_a_leaf_back() -> None:
    tree = (pure(pid) | pure(pid).on(in_task())).on(POOL)
    with trio.fail_after(30):
        remote, local = (await run(tree, None)).unwrap()
    assert local == os.getpid() != remote


async def test_events_and_paths_under_on() -> None:
    rec = Recorder()
    tree = pure(inc).named("inc").on(POOL).named("cpu")
    with trio.fail_after(30):
        assert await run(tree, 1, observer=rec) == Success(2)
    paths = {e.path for e in rec.events}
    assert "cpu/inc" in paths


# -- errors ------------------------------------------------------------------


async def test_lift_error_is_crashed_with_the_remote_traceback() -> None:
    with trio.fail_after(30):
        result = await run(lift(boom).on(POOL), 7)
    assert result == Failure(Crashed(ValueError("bad input 7"), "boom.on/boom"))
    exc = result.failure().exception
    text = remote_traceback(exc)
    assert text is not None
    assert "in boom" in text and "ValueError: bad input 7" in text
    assert "call_in_worker" not in text  # starts in the user's function
    assert any("remote traceback (worker process)" in n for n in exc.__notes__)


async def test_pure_error_propagates_as_itself() -> None:
    with trio.fail_after(30), pytest.raises(ValueError, match="bad input 3") as info:
        await run(pure(boom).on(POOL), 3)
    notes = info.value.__notes__
    assert any("raised in node 'boom.on/boom'" in n for n in notes)
    assert remote_traceback(info.value) is not None


async def test_an_exception_that_does_not_pickle_comes_back_as_remote_error() -> None:
    with trio.fail_after(30):
        result = await run(lift(raise_unpicklable).on(POOL), None)
    exc = result.failure().exception
    assert isinstance(exc, RemoteError)
    assert exc.type_name.endswith("Unpicklable") and "holds a lock" in str(exc)
    assert "raise_unpicklable" in (remote_traceback(exc) or "")


async def test_a_failing_sibling_in_task_is_unaffected() -> None:
    tree = (pure(inc).on(POOL) | fail("no")).recover(lambda e: (0, e))
    with trio.fail_after(30):
        assert await run(tree, 1) == Success((0, "no"))


# -- cancellation --------------------------------------------------------------


async def test_timeout_kills_a_60_second_leaf(tmp_path: Path) -> None:
    with trio.fail_after(30):
        await run(pure(pid).on(POOL), None)  # a worker is warm: it starts spinning at once
    tree = lift(spin_forever).on(POOL).timeout(1.0)
    fires_at = [trio.current_time() + 1.0]
    await _assert_killed(tree, tmp_path / "pid", Failure(TimedOut("spin_forever.timeout", 1.0)), fires_at)


async def test_fail_fast_sibling_kills_the_leaf(tmp_path: Path) -> None:
    failed_at: list[float] = []

    @agent
    async def fails_soon(path: str) -> Result[int, str]:
        while not Path(path).exists():  # fail once the leaf is surely spinning
            await trio.sleep(0.05)
        failed_at.append(trio.current_time())
        return Failure("sibling failed")

    tree = pure(spin_forever).on(processes(1)) | fails_soon
    await _assert_killed(tree, tmp_path / "pid", Failure("sibling failed"), failed_at)


async def test_without_kill_on_cancel_the_leaf_is_waited_for() -> None:
    tree = pure(nap).on(processes(1, kill_on_cancel=False)).timeout(0.05)
    start = time.monotonic()
    with trio.fail_after(30):
        result = await run(tree, 0.5)
    assert result == Failure(TimedOut("nap.timeout", 0.05))
    assert time.monotonic() - start >= 0.5


# -- limits and pools -----------------------------------------------------------


def _disjoint(spans: list[tuple[float, float]]) -> bool:
    spans = sorted(spans)
    return all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))


async def test_max_workers_bounds_concurrency() -> None:
    one = processes(1)
    tree = pure(nap).on(one) | pure(nap).on(one) | pure(nap).on(one)
    with trio.fail_after(30):
        spans = list((await run(tree, 0.1)).unwrap())
    assert _disjoint(spans)


async def test_limit_holds_its_slot_while_the_worker_runs() -> None:
    # POOL has two workers, but the limit lets one leaf hold a slot at a time.
    tree = (pure(nap).on(POOL).priority(Priority.HIGH) | pure(nap).on(POOL)).limit(1)
    with trio.fail_after(30):
        spans = list((await run(tree, 0.1)).unwrap())
    assert _disjoint(spans)


@settings(max_examples=12, deadline=None)
@given(st.lists(st.sampled_from(["inc", "double", "crash"]), min_size=1, max_size=4), st.integers(-50, 50))
async def test_moved_chains_agree_with_in_process(ops: list[str], x: int) -> None:
    fns = {"inc": inc, "double": double, "crash": boom}
    leaves = [lift(fns[o]) for o in ops]
    tree: Agent[int, int, Crashed] = leaves[0]
    for leaf in leaves[1:]:
        tree = tree >> leaf
    with trio.fail_after(30):
        assert await run(tree.on(POOL), x) == await run(tree.on(in_task()), x)


# -- bad input ---------------------------------------------------------------------


def _closes_over_a_lock() -> Any:
    lock = threading.Lock()

    def locked(x: int) -> int:
        with lock:
            return x

    return locked


def test_function_that_does_not_pickle_is_refused_at_on() -> None:
    leaf = pure(inc) >> lift(_closes_over_a_lock()).named("locked")
    with pytest.raises(AgentTypeError, match=r"leaf 'locked'.*cannot be sent to a worker"):
        leaf.on(processes())


def test_lambda_is_refused_when_the_transport_is_plain_pickle() -> None:
    square: Agent[int, int, Never] = pure(lambda x: x * x)
    if _process_dumps() is pickle.dumps:
        with pytest.raises(AgentTypeError, match="cannot be sent"):
            square.on(POOL)
    else:  # cloudpickle is installed: trio-parallel sends lambdas by value
        assert square.on(POOL) is not None


def test_subtree_without_sync_leaf_is_refused() -> None:
    @agent
    async def io(x: int) -> Result[int, str]:
        return Success(x)

    with pytest.raises(BuildError, match="no sync leaf"):
        io.on(POOL)


def test_bad_arguments() -> None:
    with pytest.raises(AgentTypeError, match="expected an Executor"):
        pure(inc).on("processes")  # type: ignore[arg-type]
    for bad in (0, -1, 1.5, True):
        with pytest.raises(BuildError, match="max_workers"):
            processes(bad)  # type: ignore[arg-type]


def test_node_identity_and_repr() -> None:
    a, b = processes(), processes()
    assert isinstance(a, Executor) and isinstance(a, ProcessPool)
    assert pure(inc).on(a) == pure(inc).on(a)
    assert pure(inc).on(a) != pure(inc).on(b)
    assert hash(pure(inc).on(a)) == hash(pure(inc).on(a))
    assert repr(pure(inc).on(a)) == "pure(inc).on(processes)"


# -- the example -----------------------------------------------------------------------


async def test_cpu_scoring_example_on_processes_matches_in_task() -> None:
    from examples.cpu_scoring import choose, main

    root = Path(__file__).resolve().parent.parent
    with trio.fail_after(180):
        proc = await trio.run_process(
            [sys.executable, str(root / "examples" / "cpu_scoring.py"), "--executor", "processes"],
            capture_stdout=True,
            cwd=root,
        )
        local = await main(choose("in_task"))
    lines = proc.stdout.decode().splitlines()
    assert lines[0] == "executor: processes"
    assert lines[1:-1] == local[1:-1]  # the same table, row for row
    assert len(lines) == 2 + 5 + 1 and lines[-1].startswith("wall time:")


def test_the_executors_benchmark_says_slower_when_it_is() -> None:
    from benchmarks.executors import verdict

    assert verdict(1.77) == "1.77x faster"
    assert verdict(1.0) == "1.00x faster"
    assert verdict(0.91) == "1.10x slower"
