"""The peers, measured beside us in one process: LangChain's LCEL, aiometer and plain asyncio.

Run: ``uv run --group peers python -m benchmarks.peers`` (``--quick`` for a
short run).  The ``peers`` dependency group installs ``langchain-core`` and
``aiometer``; they are not needed by the library or its tests.

Every case gives each side the same leaf, a function that yields to its
event loop once and returns ``x * 2`` (asyncio's ``sleep(0)`` on the
asyncio side, trio's ``checkpoint()`` on ours), and runs each side in a
fresh event loop of its own (``asyncio.run`` / ``trio.run``).  It prints
median µs per item over several repetitions and the ratio *peer / ours*:
above 1 we are faster, below 1 the peer is.

Cases:

* a fan-out of 10,000 inputs at concurrency 100: LCEL ``abatch`` with
  ``max_concurrency``, aiometer ``run_on_each`` with ``max_at_once`` and
  asyncio ``gather`` + ``Semaphore`` (the plain-asyncio baseline) against
  ``each`` under ``max_concurrency=100``;
* a sequence of 1,000 steps: an LCEL ``RunnableSequence`` of
  ``RunnableLambda`` steps against a ``>>`` chain;
* 100 branches on one input: LCEL ``RunnableParallel`` against ``|``.
"""

from __future__ import annotations

import asyncio
import functools
import platform
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import trio
from returns.result import Result, Success

from benchmarks._harness import median_seconds, table
from combinators import Agent, agent, each, run

try:
    import aiometer
    from langchain_core.runnables import Runnable, RunnableLambda, RunnableParallel
except ImportError:  # pragma: no cover - the message is the point
    sys.exit("benchmarks.peers needs the `peers` group: uv run --group peers python -m benchmarks.peers")


# -- the leaf, on each side ---------------------------------------------------


async def trio_work(x: int) -> Result[int, str]:
    await trio.lowlevel.checkpoint()
    return Success(x * 2)


async def asyncio_work(x: int) -> int:
    await asyncio.sleep(0)
    return x * 2


async def asyncio_step(x: int) -> int:
    await asyncio.sleep(0)
    return x + 1


async def trio_step(x: int) -> Result[int, str]:
    await trio.lowlevel.checkpoint()
    return Success(x + 1)


# -- plain asyncio ------------------------------------------------------------


async def gather_semaphore(n: int, limit: int) -> list[int]:
    semaphore = asyncio.Semaphore(limit)

    async def one(i: int) -> int:
        async with semaphore:
            return await asyncio_work(i)

    return list(await asyncio.gather(*(one(i) for i in range(n))))


# -- the peers ------------------------------------------------------------------


async def lcel_abatch(n: int, limit: int) -> list[int]:
    runnable: Runnable[int, int] = RunnableLambda(asyncio_work)
    values: list[int] = await runnable.abatch(list(range(n)), config={"max_concurrency": limit})
    return values


async def aiometer_each(n: int, limit: int) -> None:
    await aiometer.run_on_each(asyncio_work, range(n), max_at_once=limit)


def lcel_sequence(n: int) -> Runnable[int, int]:
    steps: list[Runnable[int, int]] = [RunnableLambda(asyncio_step) for _ in range(n)]
    sequence: Runnable[int, int] = steps[0]
    for step in steps[1:]:
        sequence = sequence | step
    return sequence


def lcel_parallel(n: int) -> Runnable[int, dict[str, Any]]:
    parallel: Runnable[int, dict[str, Any]] = RunnableParallel(
        {f"b{i}": RunnableLambda(asyncio_work) for i in range(n)}
    )
    return parallel


# -- measuring --------------------------------------------------------------------


def on_asyncio(make: Callable[[], Coroutine[Any, Any, object]], repeat: int) -> float:
    return median_seconds(lambda: asyncio.run(make()), repeat=repeat)


def on_trio(tree: Agent[Any, Any, Any], x: object, repeat: int, **kw: Any) -> float:
    return median_seconds(lambda: trio.run(functools.partial(run, tree, x, **kw)), repeat=repeat)


def main() -> None:
    quick = "--quick" in sys.argv
    repeat = 3 if quick else 7
    n, limit = (2_000, 100) if quick else (10_000, 100)
    rows: list[list[object]] = []

    ours = on_trio(each(agent(trio_work)), range(n), repeat, max_concurrency=limit)
    for label, make in (
        ("LCEL abatch", lambda: lcel_abatch(n, limit)),
        ("aiometer run_on_each", lambda: aiometer_each(n, limit)),
        ("asyncio gather+Semaphore", lambda: gather_semaphore(n, limit)),
    ):
        peer = on_asyncio(make, repeat)
        rows.append([f"{label} vs each, {n} at {limit}", peer / n * 1e6, ours / n * 1e6, peer / ours])

    steps = 1_000
    chain: Agent[int, int, str] = functools.reduce(lambda a, b: a >> b, [agent(trio_step)] * steps)
    sequence = lcel_sequence(steps)
    ours = on_trio(chain, 0, repeat)
    peer = on_asyncio(lambda: sequence.ainvoke(0), repeat)
    rows.append([f"LCEL RunnableSequence vs >>, {steps} steps", peer / steps * 1e6, ours / steps * 1e6, peer / ours])

    branches = 100
    group: Agent[int, Any, str] = agent(trio_work)
    for _ in range(branches - 1):
        group = group | agent(trio_work)
    parallel = lcel_parallel(branches)
    ours = on_trio(group, 1, repeat)
    peer = on_asyncio(lambda: parallel.ainvoke(1), repeat)
    rows.append(
        [f"LCEL RunnableParallel vs |, {branches} branches", peer / branches * 1e6, ours / branches * 1e6, peer / ours]
    )

    print(f"machine: {platform.machine()}, Python {platform.python_version()}, {platform.system()}")
    print(
        table(
            f"peers against combinators (median of {repeat}; µs per item/step/branch; peer/ours > 1: we are faster)",
            ["case", "peer µs", "ours µs", "peer/ours"],
            rows,
        )
    )


if __name__ == "__main__":
    main()
