"""`>>` chains and `|` groups against the same awaits written by hand in trio.

Run: ``uv run python -m benchmarks.chain``.  Prints medians (µs per step or
per operand), the ratio to hand-written trio measured in the same run, and
the cost of an attached observer (paired-run ratios with a ``Tally`` and a
``Recorder``).  The steps do nothing and never yield to trio, so a step
costs about 0.6 µs and the two events of an observed step cost about as
much again: this is the observer's worst case.
"""

from __future__ import annotations

import functools
from typing import Any

import trio
from returns.result import Failure, Result, Success

from benchmarks._harness import Tally, median_ratio, median_seconds, table
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


def observer_costs(tree: Agent[int, Any, str]) -> tuple[float, float]:
    """Paired-run ratios with a ``Tally`` and with a ``Recorder`` attached."""
    plain = functools.partial(run, tree, 0)
    return (
        median_ratio(lambda: trio.run(plain), lambda: trio.run(functools.partial(plain, observer=Tally()))),
        median_ratio(lambda: trio.run(plain), lambda: trio.run(functools.partial(plain, observer=Recorder()))),
    )


def main() -> None:
    leaf = agent(step)
    rows = []
    for n in (1_000, 10_000):
        chain = functools.reduce(lambda a, b: a >> b, [leaf] * n)
        hand = median_seconds(lambda: trio.run(hand_chain, n))
        ours = median_seconds(lambda: trio.run(run, chain, 0))
        rows.append([f">> chain of {n}", hand / n * 1e6, ours / n * 1e6, ours / hand, *observer_costs(chain)])
    for n in (1_000,):
        group: Agent[int, Any, str] = leaf
        for _ in range(n - 1):
            group = group | leaf
        hand = median_seconds(lambda: trio.run(hand_group, n))
        ours = median_seconds(lambda: trio.run(run, group, 0))
        rows.append([f"| of {n} operands", hand / n * 1e6, ours / n * 1e6, ours / hand, *observer_costs(group)])
    print(
        table(
            "chains and groups (median of 7; µs per step/operand)",
            ["case", "hand µs", "ours µs", "ours/hand", "observer x", "Recorder x"],
            rows,
        )
    )


if __name__ == "__main__":
    main()
