"""`>>` chains and `|` groups against the same awaits written by hand in trio.

Run: ``uv run python -m benchmarks.chain``.  Prints medians (µs per step or
per operand) and the ratio to hand-written trio measured in the same run.
"""

from __future__ import annotations

import functools
from typing import Any

import trio
from returns.result import Failure, Result, Success

from benchmarks._harness import median_seconds, table
from combinators import Agent, Recorder, agent, run


async def step(x: int) -> Result[int, str]:
    return Success(x + 1)


async def hand_chain(n: int) -> Result[int, str]:
    x = 0
    result: Result[int, str] = Success(0)
    for _ in range(n):
        result = await step(x)
        if isinstance(result, Failure):
            return result
        x = result.unwrap()
    return result


async def hand_group(n: int) -> Result[tuple[int, ...], str]:
    values: list[Any] = [None] * n

    async with trio.open_nursery() as nursery:

        async def one(i: int) -> None:
            values[i] = (await step(0)).unwrap()

        for i in range(n):
            nursery.start_soon(one, i)
    return Success(tuple(values))


def main() -> None:
    leaf = agent(step)
    rows = []
    for n in (1_000, 10_000):
        chain = functools.reduce(lambda a, b: a >> b, [leaf] * n)
        hand = median_seconds(lambda: trio.run(hand_chain, n))
        ours = median_seconds(lambda: trio.run(run, chain, 0))
        observed = median_seconds(lambda: trio.run(functools.partial(run, chain, 0, observer=Recorder())))
        rows.append([f">> chain of {n}", hand / n * 1e6, ours / n * 1e6, ours / hand, observed / ours])
    for n in (1_000,):
        group: Agent[int, Any, str] = leaf
        for _ in range(n - 1):
            group = group | leaf
        hand = median_seconds(lambda: trio.run(hand_group, n))
        ours = median_seconds(lambda: trio.run(run, group, 0))
        observed = median_seconds(lambda: trio.run(functools.partial(run, group, 0, observer=Recorder())))
        rows.append([f"| of {n} operands", hand / n * 1e6, ours / n * 1e6, ours / hand, observed / ours])
    print(
        table(
            "chains and groups (median of 7; µs per step/operand)",
            ["case", "hand µs", "ours µs", "ours/hand", "observer cost x"],
            rows,
        )
    )


if __name__ == "__main__":
    main()
