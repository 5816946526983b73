"""`each` over many inputs under a limit, against two hand-written trio baselines.

Run: ``uv run python -m benchmarks.each``.

* *naive*: one nursery, every item spawned at once, each taking a
  ``CapacityLimiter`` slot inside its task;
* *tight*: ``limit`` long-lived workers pulling items from a shared iterator.

Prints medians (µs per item), the ratio to each baseline measured in the
same run, the same against the tight pool for leaves that do nothing at all
(not even yield: what is left is the interpreter's bookkeeping), the cost of an attached observer, and the memory added by 100,000
inputs at limit 1,000.  "observer x" is the median ratio of paired runs with
and without a ``Tally`` (counts events, keeps none); "Recorder x" the same
with a ``Recorder``, which keeps both events of every item alive; "µs/event"
is the interpreter's own cost of one event, from paired runs with an
observer that does nothing at C level.
"""

from __future__ import annotations

import collections
import functools
import sys
from collections.abc import Iterator
from typing import Any

import trio
from returns.result import Result, Success

from benchmarks._harness import Tally, median_ratio, median_seconds, peak_mib, table
from combinators import Recorder, agent, collect, each, run


async def work(x: int) -> Result[int, str]:
    await trio.lowlevel.checkpoint()
    return Success(x * 2)


async def nothing(x: int) -> Result[int, str]:
    """A leaf that does nothing, not even yield: all that is left is bookkeeping."""
    return Success(x + 1)


async def tight_nothing(n: int, limit: int) -> list[int]:
    """The tight pool calling :func:`nothing`."""
    out: list[Any] = [None] * n
    items: Iterator[int] = iter(range(n))

    async def worker() -> None:
        for i in items:
            out[i] = (await nothing(i)).unwrap()

    async with trio.open_nursery() as nursery:
        for _ in range(limit):
            nursery.start_soon(worker)
    return out


async def naive(n: int, limit: int) -> list[int]:
    limiter = trio.CapacityLimiter(limit)
    out: list[Any] = [None] * n

    async def one(i: int) -> None:
        async with limiter:
            out[i] = (await work(i)).unwrap()

    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(one, i)
    return out


async def tight(n: int, limit: int, *, keep_results: bool = False) -> list[int]:
    """``limit`` workers on a shared iterator; ``keep_results`` keeps each ``Result`` (as ``collect`` must)."""
    out: list[Any] = [None] * n
    items: Iterator[int] = iter(range(n))

    async def worker() -> None:
        for i in items:
            result = await work(i)
            out[i] = result if keep_results else result.unwrap()

    async with trio.open_nursery() as nursery:
        for _ in range(limit):
            nursery.start_soon(worker)
    return out


def main() -> None:
    fan_out = each(agent(work))
    quick = "--quick" in sys.argv
    sizes = (10_000,) if quick else (10_000, 100_000)
    rows = []
    for n in sizes:
        for limit in (100, 1_000):
            t_naive = median_seconds(lambda: trio.run(naive, n, limit), repeat=3 if n > 10_000 else 5)
            t_tight = median_seconds(lambda: trio.run(tight, n, limit), repeat=3 if n > 10_000 else 5)
            ours = median_seconds(
                lambda: trio.run(functools.partial(run, fan_out, range(n), max_concurrency=limit)),
                repeat=3 if n > 10_000 else 5,
            )
            plain = functools.partial(run, fan_out, range(n), max_concurrency=limit)
            # A C-level observer that does nothing: what the interpreter alone
            # spends on the two events of each item.
            interpreter = median_ratio(
                lambda: trio.run(plain),
                lambda: trio.run(functools.partial(plain, observer=collections.deque(maxlen=0).append)),
                repeat=5 if n > 10_000 else 9,
            )
            tally = median_ratio(
                lambda: trio.run(plain),
                lambda: trio.run(functools.partial(plain, observer=Tally())),
                repeat=5 if n > 10_000 else 9,
            )
            recorder = median_ratio(
                lambda: trio.run(plain),
                lambda: trio.run(functools.partial(plain, observer=Recorder())),
                repeat=3 if n > 10_000 else 5,
            )
            rows.append(
                [
                    f"each n={n} limit={limit}",
                    t_naive / n * 1e6,
                    t_tight / n * 1e6,
                    ours / n * 1e6,
                    ours / t_tight,
                    t_naive / ours,
                    (interpreter - 1) * ours / n * 1e6 / 2,
                    tally,
                    recorder,
                ]
            )
    print(
        table(
            "each under max_concurrency (median; µs per item)",
            ["case", "naive µs", "tight µs", "ours µs", "ours/tight", "naive/ours", "µs/event", "observer x", "Recorder x"],
            rows,
        )
    )
    idle = each(agent(nothing))
    idle_rows = []
    for n in sizes:
        for limit in (100, 1_000):
            t_tight = median_seconds(lambda: trio.run(tight_nothing, n, limit), repeat=5)
            ratio = median_ratio(
                lambda: trio.run(tight_nothing, n, limit),
                lambda: trio.run(functools.partial(run, idle, range(n), max_concurrency=limit)),
                repeat=9,
            )
            idle_rows.append([f"each n={n} limit={limit}", t_tight / n * 1e6, t_tight * ratio / n * 1e6, ratio])
    print()
    print(
        table(
            "each of leaves that do nothing (not even yield), against the tight pool (paired median; µs per item)",
            ["case", "tight µs", "ours µs", "ours/tight"],
            idle_rows,
        )
    )
    n = 10_000 if quick else 100_000
    base = peak_mib(lambda: trio.run(tight, n, 1_000))
    ours_mib = peak_mib(lambda: trio.run(functools.partial(run, fan_out, range(n), max_concurrency=1_000)))
    # collect(each(...)) keeps every outcome: its baseline keeps every Result too.
    base_kept = peak_mib(lambda: trio.run(functools.partial(tight, n, 1_000, keep_results=True)))
    kept = collect(fan_out)
    kept_mib = peak_mib(lambda: trio.run(functools.partial(run, kept, range(n), max_concurrency=1_000)))
    print()
    print(
        table(
            f"memory over {n} inputs at limit 1,000 (peak traced MiB, results included)",
            ["case", "tight MiB", "ours MiB", "ours - tight", "bytes/input over tight"],
            [
                ["each", base, ours_mib, ours_mib - base, (ours_mib - base) * 2**20 / n],
                ["collect(each)", base_kept, kept_mib, kept_mib - base_kept, (kept_mib - base_kept) * 2**20 / n],
            ],
        )
    )


if __name__ == "__main__":
    main()
