"""CPU-bound leaves in the trio task vs worker processes; the Ray bridge's overhead.

Run it with ``uv run --extra ray python -m benchmarks.executors [--no-ray]``.
Printed, not asserted (numbers depend on the machine and its load).

1. ``each`` over 100 inputs, each leaf the sum of squares of 200,000 ints:
   in the trio task, then on ``processes(2)`` (workers warmed first, so
   process start-up is not counted), in ``REPEAT`` back-to-back pairs:
   medians, the spread, and the machine (CPU, cores, load average), since
   the ratio is the machine's and its load's more than the library's.  On
   2 idle cores it should be about 1.5-2x; on a loaded machine the pool can
   be slower, and the line says "slower" then.
2. Ray, per task, on a local cluster with 2 CPUs, for a trivial function:
   through the tree (``pure(f).on(ray_cluster())``), through the bridge
   alone (``wait_ref``: a done-callback into trio), and calling Ray from a
   thread (``trio.to_thread.run_sync(ray.get, ref)``), each both one at a
   time (latency) and 200 at once (throughput).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from combinators import each, processes, pure, run
from combinators._ray import RayCluster, ray_cluster, wait_ref

LEAVES = 100
N = 200_000
RAY_TASKS = 200


def sum_of_squares(n: int) -> int:
    """The CPU-bound leaf."""
    total = 0
    for i in range(n):
        total += i * i
    return total


def identity(x: int) -> int:
    """The trivial Ray task: all cost is overhead."""
    return x


#: Paired repetitions of the CPU-bound case (in the task, then on the pool).
REPEAT = 5


def machine() -> str:
    """The CPU model, core count, Python and load: what the figures depend on."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            model = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = "n/a"
    if hasattr(os, "getloadavg"):
        load = "%.1f" % os.getloadavg()[0]
    return f"{model}, {os.cpu_count()} CPUs, CPython {platform.python_version()}, load average {load}"


def verdict(ratio: float) -> str:
    """``1.77x faster`` or ``1.10x slower``: a ratio below 1 is said as what it is."""
    return f"{ratio:.2f}x faster" if ratio >= 1 else f"{1 / ratio:.2f}x slower"


async def cpu_leaves(repeat: int = REPEAT) -> list[str]:
    inputs = [N] * LEAVES
    lines = [f"{LEAVES} leaves, sum of squares of {N:,} ints, {repeat} paired runs on {machine()}:"]
    pool = processes(2)
    moved = each(pure(sum_of_squares).on(pool))
    await run(moved, [1, 1])  # start both workers outside the measurement
    in_task: list[float] = []
    on_pool: list[float] = []
    for _ in range(repeat):
        start = time.perf_counter()
        local = await run(each(pure(sum_of_squares)), inputs)
        in_task.append(time.perf_counter() - start)
        start = time.perf_counter()
        remote = await run(moved, inputs)
        on_pool.append(time.perf_counter() - start)
        assert local == remote
    ratios = sorted(a / b for a, b in zip(in_task, on_pool, strict=True))
    ratio = statistics.median(ratios)
    lines.append(f"  in the trio task      {statistics.median(in_task):7.2f} s (median; {min(in_task):.2f}-{max(in_task):.2f})")
    lines.append(f"  processes(2)          {statistics.median(on_pool):7.2f} s (median; {min(on_pool):.2f}-{max(on_pool):.2f})")
    lines.append(
        f"  processes(2) is {verdict(ratio)} (median of the paired ratios; "
        f"spread {ratios[0]:.2f}-{ratios[-1]:.2f})"
    )
    return lines


async def _timed(label: str, one: Callable[[int], Awaitable[Any]]) -> str:
    start = time.perf_counter()
    for i in range(RAY_TASKS):
        await one(i)
    serial = (time.perf_counter() - start) / RAY_TASKS
    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for i in range(RAY_TASKS):
            nursery.start_soon(one, i)
    concurrent = (time.perf_counter() - start) / RAY_TASKS
    return f"  {label:<34}{serial * 1e3:8.2f} ms{concurrent * 1e3:12.2f} ms"


async def ray_bridge(cluster: RayCluster) -> list[str]:
    import ray

    await trio.to_thread.run_sync(cluster.connect)
    remote = ray.remote(identity).options(max_retries=0)
    ray.get([remote.remote(i) for i in range(20)])  # warm the workers
    tree = pure(identity).on(cluster)

    async def through_tree(i: int) -> Any:
        return await run(tree, i)

    async def through_bridge(i: int) -> Any:
        return await wait_ref(remote.remote(i))

    async def through_thread(i: int) -> Any:
        return await trio.to_thread.run_sync(ray.get, remote.remote(i))

    for i in range(20):  # the first calls export the task wrapper to the workers
        await through_tree(i)
    lines = [f"Ray, {RAY_TASKS} trivial tasks, per task:      one at a time   {RAY_TASKS} at once"]
    lines.append(await _timed("tree: pure(f).on(ray_cluster())", through_tree))
    lines.append(await _timed("bridge: wait_ref (done-callback)", through_bridge))
    lines.append(await _timed("thread: to_thread(ray.get)", through_thread))
    return lines


async def main(with_ray: bool, repeat: int = REPEAT) -> None:
    for line in await cpu_leaves(repeat):
        print(line)
    if with_ray:
        cluster = ray_cluster(num_cpus=2)
        try:
            for line in await ray_bridge(cluster):
                print(line)
        finally:
            cluster.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="executors benchmark")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray part")
    parser.add_argument("--repeat", type=int, default=REPEAT, help="paired runs of the CPU-bound case")
    args = parser.parse_args()
    trio.run(main, not args.no_ray, args.repeat)
