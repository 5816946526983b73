"""CPU-bound leaves in the trio task vs worker processes; the Ray bridge's overhead.

Run it with ``uv run --extra ray python -m benchmarks.executors [--no-ray]``.
Printed, not asserted (numbers depend on the machine and its load).

1. ``each`` over 100 inputs, each leaf the sum of squares of 200,000 ints:
   in the trio task, then on ``processes(2)`` (workers warmed first, so
   process start-up is not counted).  On 2 idle cores the ratio should be
   about 1.5-2x.
2. Ray, per task, on a local cluster with 2 CPUs, for a trivial function:
   through the tree (``pure(f).on(ray_cluster())``), through the bridge
   alone (``wait_ref``: a done-callback into trio), and calling Ray from a
   thread (``trio.to_thread.run_sync(ray.get, ref)``), each both one at a
   time (latency) and 200 at once (throughput).
"""

from __future__ import annotations

import argparse
import os
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


async def cpu_leaves() -> list[str]:
    inputs = [N] * LEAVES
    lines = [f"{LEAVES} leaves, sum of squares of {N:,} ints, on {os.cpu_count()} CPUs:"]
    start = time.perf_counter()
    local = await run(each(pure(sum_of_squares)), inputs)
    in_task = time.perf_counter() - start
    pool = processes(2)
    moved = each(pure(sum_of_squares).on(pool))
    await run(moved, [1, 1])  # start both workers outside the measurement
    start = time.perf_counter()
    remote = await run(moved, inputs)
    on_pool = time.perf_counter() - start
    assert local == remote
    lines.append(f"  in the trio task      {in_task:7.2f} s")
    lines.append(f"  processes(2)          {on_pool:7.2f} s   ({in_task / on_pool:.2f}x faster)")
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


async def main(with_ray: bool) -> None:
    for line in await cpu_leaves():
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
    args = parser.parse_args()
    trio.run(main, not args.no_ray)
