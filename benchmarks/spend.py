"""Spend control costs (printed, not asserted).

    uv run python -m benchmarks.spend [--leaves N]

* **admission per leaf**: ``each(a)`` over N inputs, ``a`` an agent leaf with
  one checkpoint, under ``.limit(1000)``, under ``.budget(Usage(cost=...))``
  (large enough never to refuse) and under both; the cost per leaf is
  (time - time of the bare fan-out) / N, medians of paired runs.
* **cache hits on SQLite**: a fan-out of N leaves all answered from an
  SQLite cache (reads of one scheduling round are gathered into one query),
  in µs per leaf; and one hit alone (a thread hop).
* **single flight**: 10,000 identical concurrent calls of one cached leaf:
  how many ran, and the time per call.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio
from returns.result import Result, Success

from benchmarks._harness import table
from combinators import Cache, Usage, agent, each, run

CALLS = 0


async def _work(x: int) -> Result[int, str]:
    global CALLS
    CALLS += 1
    await trio.lowlevel.checkpoint()
    return Success(x * 2)


def _time(fn: Callable[[], Awaitable[object]]) -> float:
    async def main() -> float:
        t0 = time.perf_counter()
        await fn()
        return time.perf_counter() - t0

    return trio.run(main)


def _median_extra(base: Callable[[], Awaitable[object]], other: Callable[[], Awaitable[object]], n: int) -> float:
    """Median over paired runs of (other - base) / n, in µs."""
    _time(base)
    _time(other)
    return statistics.median((_time(other) - _time(base)) / n * 1e6 for _ in range(7))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--leaves", type=int, default=20_000)
    n: int = parser.parse_args().leaves
    inputs = list(range(n))
    leaf = agent(_work).costs(Usage(calls=1, cost=0.001))
    big = Usage(calls=10 * n, cost=float(n))
    bare = each(leaf)
    trees: dict[str, Any] = {
        ".limit(1000)": each(leaf).limit(1000),
        ".budget(...)": each(leaf).budget(big),
        ".limit(1000).budget(...)": each(leaf).limit(1000).budget(big),
        "run(budget=...)": None,
    }
    base_us = _time(lambda: run(bare, inputs)) / n * 1e6
    rows: list[list[object]] = []
    for label, tree in trees.items():

        def other(t: Any = tree) -> Awaitable[object]:
            return run(bare, inputs, budget=big) if t is None else run(t, inputs)

        rows.append([label, _median_extra(lambda: run(bare, inputs), other, n)])
    print(table(f"admission: µs per leaf over a bare each of {n} leaves ({base_us:.2f} µs per leaf)", ["tree", "extra µs/leaf"], rows))

    with tempfile.TemporaryDirectory() as tmp:
        store = Cache.sqlite(str(Path(tmp) / "cache.db"))
        cached = agent(_work).named("work").cache(store)
        fan = each(cached)
        trio.run(run, fan, inputs)  # fill the cache
        global CALLS
        CALLS = 0
        hits = statistics.median(_time(lambda: run(fan, inputs)) for _ in range(5)) / n * 1e6
        assert CALLS == 0, "every call was a hit"
        one = statistics.median(_time(lambda: run(cached, 1)) for _ in range(50)) * 1e6
        store.close()
    print()
    print(table("cache hits on SQLite", ["case", "µs per leaf"], [[f"fan-out of {n} hits (group reads)", hits], ["one hit alone", one]]))

    flights = 10_000

    async def slow(x: int) -> Result[int, str]:
        global CALLS
        CALLS += 1
        await trio.sleep(0.05)
        return Success(x)

    CALLS = 0
    same = each(agent(slow).named("slow").cache(Cache.memory()))
    took = _time(lambda: run(same, [7] * flights))
    ran = CALLS
    print()
    print(
        table(
            "single flight",
            ["identical calls", "ran", "total ms (one call sleeps 50 ms)", "µs per call"],
            [[flights, ran, took * 1e3, took / flights * 1e6]],
        )
    )


if __name__ == "__main__":
    main()
