"""Leaves as Ray tasks on a real local Ray cluster (``num_cpus=2``), no mocks.

The cluster starts once for the module (a few seconds).  Tests about
cancellation use real time, bounded with ``trio.fail_after``.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from returns.result import Failure, Result, Success

from combinators import (
    AgentTypeError,
    Crashed,
    RayCluster,
    TimedOut,
    agent,
    lift,
    pure,
    ray_cluster,
    remote_traceback,
    run,
)

# -- functions run as Ray tasks ------------------------------------------------


def pid(_: object) -> int:
    return os.getpid()


def square_sum(n: int) -> int:
    return sum(i * i for i in range(n))


def boom(x: int) -> int:
    raise KeyError(f"no such key {x}")


def die(_: object) -> int:
    os._exit(3)


def nap(seconds: float) -> tuple[float, float]:
    start = time.time()
    time.sleep(seconds)
    return (start, time.time())


def spin_forever(path: str) -> int:
    Path(path).write_text(str(os.getpid()))
    end = time.monotonic() + 60
    while time.monotonic() < end:
        pass
    return 0


# -- fixtures and helpers --------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[RayCluster]:
    made = ray_cluster(num_cpus=2)
    made.connect()  # from the main thread, before any run
    yield made
    made.shutdown()


def _alive(pid_: int) -> bool:
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


def _disjoint(spans: list[tuple[float, float]]) -> bool:
    spans = sorted(spans)
    return all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))


# -- results ---------------------------------------------------------------------


async def test_leaves_run_as_ray_tasks(cluster: RayCluster) -> None:
    tree = pure(square_sum).on(cluster) | pure(pid).on(cluster)
    with trio.fail_after(60):
        total, worker = (await run(tree, 1000)).unwrap()
    assert total == sum(i * i for i in range(1000))
    assert worker != os.getpid()


async def test_awaiting_does_not_block_trio_nor_take_a_thread_per_task(cluster: RayCluster) -> None:
    ticks = 0
    threads: list[int] = []

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            threads.append(threading.active_count())
            await trio.sleep(0.01)

    tree = pure(nap).on(cluster)
    with trio.fail_after(60):
        await run(tree, 0.0)  # warm
        before = threading.active_count()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker)
            group: Any = tree
            for _ in range(11):
                group = group | tree
            await run(group, 0.1)  # 12 tasks on 2 CPUs: about 0.6 s
            nursery.cancel_scope.cancel()
    assert ticks >= 10
    # trio.to_thread per task would add up to 12 threads here.
    assert max(threads) <= before + 2


# -- errors ----------------------------------------------------------------------


async def test_lift_error_is_crashed_with_the_remote_traceback(cluster: RayCluster) -> None:
    with trio.fail_after(60):
        result = await run(lift(boom).on(cluster), 5)
    assert result == Failure(Crashed(KeyError("no such key 5"), "boom.on/boom"))
    text = remote_traceback(result.failure().exception)
    assert text is not None and "in boom" in text and "KeyError" in text


async def test_pure_error_propagates_as_itself(cluster: RayCluster) -> None:
    with trio.fail_after(60), pytest.raises(KeyError) as info:
        await run(pure(boom).on(cluster), 1)
    assert any("raised in node 'boom.on/boom'" in n for n in info.value.__notes__)
    assert any("remote traceback (ray task)" in n for n in info.value.__notes__)


async def test_a_dying_worker_is_crashed(cluster: RayCluster) -> None:
    with trio.fail_after(60):
        result = await run(lift(die).on(cluster), None)
    assert isinstance(result, Failure)
    error = result.failure()
    assert isinstance(error, Crashed) and error.path == "die.on/die"
    assert type(error.exception).__name__ == "WorkerCrashedError", repr(error.exception)


# -- cancellation ------------------------------------------------------------------


async def _assert_killed(tree: Any, path: Path, expect: object, cancelled_at: list[float]) -> None:
    with trio.fail_after(60):
        result = await run(tree, str(path))
    took = trio.current_time() - cancelled_at[0]
    assert result == expect
    assert took < 3, f"the cancelled task took {took:.1f}s to stop"
    worker = int(path.read_text())
    assert await _gone_within(worker, 5.0), f"ray worker {worker} still alive"


async def test_fail_fast_sibling_cancels_the_task(cluster: RayCluster, tmp_path: Path) -> None:
    failed_at: list[float] = []

    @agent
    async def fails_once_it_spins(path: str) -> Result[int, str]:
        while not Path(path).exists():
            await trio.sleep(0.05)
        failed_at.append(trio.current_time())
        return Failure("sibling failed")

    tree = pure(spin_forever).on(cluster) | fails_once_it_spins
    await _assert_killed(tree, tmp_path / "pid", Failure("sibling failed"), failed_at)


async def test_timeout_cancels_a_60_second_task(cluster: RayCluster, tmp_path: Path) -> None:
    with trio.fail_after(60):
        await run(pure(pid).on(cluster), None)  # a worker is ready
    tree = lift(spin_forever).on(cluster).timeout(5.0)
    fires_at = [trio.current_time() + 5.0]
    await _assert_killed(tree, tmp_path / "pid", Failure(TimedOut("spin_forever.timeout", 5.0)), fires_at)


async def test_limit_applies_on_the_trio_side(cluster: RayCluster) -> None:
    tree = (pure(nap).on(cluster) | pure(nap).on(cluster)).limit(1)
    with trio.fail_after(60):
        spans = list((await run(tree, 0.1)).unwrap())
    assert _disjoint(spans)
    assert await run(pure(pid).on(cluster).limit(1), None) != Success(os.getpid())


# -- bad input ---------------------------------------------------------------------


def test_function_that_does_not_pickle_is_refused_at_on(cluster: RayCluster) -> None:
    lock = threading.Lock()

    def locked(x: int) -> int:
        with lock:
            return x

    with pytest.raises(AgentTypeError, match=r"leaf 'locked'.*cannot be sent.*cloudpickle"):
        lift(locked).on(cluster)


def test_lambdas_are_fine_for_ray(cluster: RayCluster) -> None:
    # Ray sends functions with cloudpickle, by value: a lambda travels.
    assert pure(lambda x: x).on(cluster).name == "lambda.on"


async def test_cpu_scoring_example_on_ray_matches_in_task(cluster: RayCluster) -> None:
    from examples.cpu_scoring import choose, main

    with trio.fail_after(180):
        on_ray = await main(choose("ray"))  # reuses the connected cluster
        local = await main(choose("in_task"))
    assert on_ray[0] == "executor: ray"
    assert on_ray[1:-1] == local[1:-1]


CONNECT_FROM_A_THREAD = """
import threading, trio
from combinators import pure, ray_cluster, run

cluster = ray_cluster(num_cpus=1)
t = threading.Thread(target=cluster.connect)
t.start()
t.join()  # the thread that asked for the cluster is gone now

async def main() -> None:
    for x in range(3):
        print((await run(pure(abs).on(cluster), -x)).unwrap())
        await trio.sleep(0.2)

trio.run(main)
cluster.shutdown()
"""


async def test_a_cluster_started_from_a_short_lived_thread_survives_it() -> None:
    # Ray ties a local cluster's processes to the thread that started it
    # (PR_SET_PDEATHSIG); trio retires idle worker threads, so connect()
    # must keep its own thread alive.  A fresh cluster, in a subprocess.
    with trio.fail_after(180):
        proc = await trio.run_process(
            [sys.executable, "-c", CONNECT_FROM_A_THREAD], capture_stdout=True, capture_stderr=True, check=False
        )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert proc.stdout.decode().split() == ["0", "1", "2"]
