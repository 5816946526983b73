"""Building trees is linear in their size: `>>` chains, `|` groups, nested wrappers.

Run: ``uv run python -m benchmarks.build``.  The last columns are µs per
node; they stay flat when building is linear.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks._harness import table
from combinators import Agent, pure


def inc(x: int) -> int:
    return x + 1


def build_chain(n: int) -> Agent[int, int, Any]:
    tree: Agent[int, int, Any] = pure(inc)
    step = pure(inc)
    for _ in range(n - 1):
        tree = tree >> step
    return tree


def build_group(n: int) -> Agent[int, Any, Any]:
    tree: Agent[int, Any, Any] = pure(inc)
    step = pure(inc)
    for _ in range(n - 1):
        tree = tree | step
    return tree


def build_wrapped(n: int) -> Agent[int, Any, Any]:
    tree: Agent[int, Any, Any] = pure(inc)
    for i in range(n - 1):
        tree = tree.transform(inc) if i % 2 else tree.fallback(pure(inc))
    return tree


def per_node(fn: Any, n: int) -> float:
    start = time.perf_counter()
    fn(n)
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    rows = []
    for n in (1_000, 10_000, 100_000):
        rows.append([n, per_node(build_chain, n), per_node(build_group, n), per_node(build_wrapped, n)])
    print(table("building trees (µs per node; flat = linear)", ["nodes", ">> chain", "| group", "wrappers"], rows))


if __name__ == "__main__":
    main()
