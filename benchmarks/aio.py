"""``aio.run`` against ``run_sync``: per-call overhead, and many concurrent callers on one loop.

    uv run python -m benchmarks.aio [--quick]

* one-leaf tree and a 1,000-leaf ``each``: N sequential calls of
  ``aio.run`` inside one ``asyncio.run`` against N ``run_sync`` calls (each
  starting trio), per call; the ratio is the median of back-to-back pairs;
* 1,000 concurrent ``aio.run`` calls on one loop (one leaf each, one trio
  checkpoint): wall time and peak traced Python memory, against the same
  1,000 runs started concurrently inside one ``trio.run``.

Printed, not asserted (the machines are noisy); the README quotes it.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import trio
from returns.result import Result, Success

from benchmarks._harness import median_ratio, median_seconds, peak_mib, table
from combinators import Agent, agent, aio, each, run, run_sync


@agent
async def leaf(x: int) -> Result[int, str]:
    await trio.lowlevel.checkpoint()
    return Success(x + 1)


def sequential_aio(tree: Agent[Any, Any, Any], x: object, calls: int) -> None:
    async def main() -> None:
        for _ in range(calls):
            await aio.run(tree, x)

    asyncio.run(main())


def sequential_sync(tree: Agent[Any, Any, Any], x: object, calls: int) -> None:
    for _ in range(calls):
        run_sync(tree, x)


def concurrent_aio(n: int) -> None:
    async def main() -> None:
        await asyncio.gather(*(aio.run(leaf, i) for i in range(n)))

    asyncio.run(main())


def concurrent_trio(n: int) -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for i in range(n):
                nursery.start_soon(run, leaf, i)

    trio.run(main)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    repeat = 3 if args.quick else 7
    rows: list[list[object]] = []
    for label, tree, x, calls in (
        ("one leaf", leaf, 1, 100 if args.quick else 300),
        ("each of 1,000 leaves", each(leaf), list(range(1000)), 10 if args.quick else 30),
    ):
        sync = median_seconds(lambda: sequential_sync(tree, x, calls), repeat=repeat) / calls
        guest = median_seconds(lambda: sequential_aio(tree, x, calls), repeat=repeat) / calls
        ratio = median_ratio(lambda: sequential_sync(tree, x, calls), lambda: sequential_aio(tree, x, calls), repeat=repeat)
        rows.append([label, sync * 1e3, guest * 1e3, ratio])
    print(table("per call (ms): aio.run inside one asyncio.run vs run_sync", ["tree", "run_sync", "aio.run", "ratio"], rows))

    n = 1000
    trio_s = median_seconds(lambda: concurrent_trio(n), repeat=repeat)
    aio_s = median_seconds(lambda: concurrent_aio(n), repeat=repeat)
    trio_mib = peak_mib(lambda: concurrent_trio(n))
    aio_mib = peak_mib(lambda: concurrent_aio(n))
    print()
    print(
        table(
            f"{n:,} concurrent runs of a one-leaf tree",
            ["how", "wall ms", "peak MiB (traced)"],
            [["run() in one trio.run", trio_s * 1e3, trio_mib], ["aio.run on one asyncio loop", aio_s * 1e3, aio_mib]],
        )
    )


if __name__ == "__main__":
    main()
