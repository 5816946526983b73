"""Workflow building is linear: time to add N nodes and build(), N = 1k, 10k, 100k.

Two shapes: a chain (each node after the previous one) and a wide fan
(N independent nodes, then one node reading all of them).  The last column
is the time per node; it stays flat when building is linear (a quadratic
builder would grow it 10x per row).  With the garbage collector on, the
per-node cost creeps up at 100k because CPython's generational collector
keeps rescanning the growing number of live objects; the ``gc off`` column
shows the builder's own cost.

Run with ``uv run python benchmarks/workflow_build.py``.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

from combinators import Node, Workflow, pure

SIZES = (1_000, 10_000, 100_000)


def inc(x: int) -> int:
    return x + 1


def total(xs: tuple[int, ...]) -> int:
    return sum(xs)


def chain(n: int) -> tuple[float, float]:
    start = time.perf_counter()
    step = pure(inc)
    wf, prev = Workflow.start(int).add("n0", step)
    for i in range(1, n):
        wf, prev = wf.add(f"n{i}", step, after=prev)
    added = time.perf_counter()
    wf.build(output=prev)
    return added - start, time.perf_counter() - added


def fan(n: int) -> tuple[float, float]:
    start = time.perf_counter()
    step = pure(inc)
    wf = Workflow.start(int)
    handles: list[Node[int]] = []
    for i in range(n):
        wf, h = wf.add(f"n{i}", step)
        handles.append(h)
    wf, out = wf.add("total", pure(total), after=handles)
    added = time.perf_counter()
    wf.build(output=out)
    return added - start, time.perf_counter() - added


def best_of(shape: Callable[[int], tuple[float, float]], n: int, *, gc_on: bool) -> tuple[float, float]:
    gc.collect()
    if not gc_on:
        gc.disable()
    try:
        return min((shape(n) for _ in range(3)), key=sum)
    finally:
        gc.enable()


def measure(shape: Callable[[int], tuple[float, float]], label: str) -> list[float]:
    per_node: list[float] = []
    print(f"{label}:")
    print(f"  {'nodes':>8}  {'add (s)':>9}  {'build (s)':>9}  {'total (s)':>9}  {'us/node':>8}  {'us/node, gc off':>15}")
    for n in SIZES:
        add, build = best_of(shape, n, gc_on=True)
        us = (add + build) / n * 1e6
        quiet = sum(best_of(shape, n, gc_on=False)) / n * 1e6
        per_node.append(quiet)
        print(f"  {n:>8}  {add:>9.4f}  {build:>9.4f}  {add + build:>9.4f}  {us:>8.2f}  {quiet:>15.2f}")
    return per_node


def main() -> None:
    for shape, label in ((chain, "chain"), (fan, "fan-in")):
        per_node = measure(shape, label)
        growth = per_node[-1] / per_node[0]
        print(f"  per-node cost (gc off) at 100k / at 1k: {growth:.2f}x (linear ~1x, quadratic ~100x)")


if __name__ == "__main__":
    main()
