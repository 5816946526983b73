"""Running a 10,000-node workflow against the same work written by hand in trio.

Run: ``uv run python -m benchmarks.workflow_run``.  Two shapes: 10,000
independent nodes then one fan-in node (hand-written: one nursery, one task
per node, then the sum), and a chain of 10,000 nodes (hand-written: the same
awaits in a loop).
"""

from __future__ import annotations

import functools
from typing import Any

import trio
from returns.result import Result, Success

from benchmarks._harness import Tally, median_ratio, median_seconds, peak_mib, table
from combinators import Node, Recorder, Workflow, agent, pure, run

N = 10_000


async def work(x: int) -> Result[int, str]:
    await trio.lowlevel.checkpoint()
    return Success(x + 1)


def total(xs: tuple[int, ...]) -> int:
    return sum(xs)


async def hand_fan(n: int) -> int:
    out: list[Any] = [0] * n

    async with trio.open_nursery() as nursery:

        async def one(i: int) -> None:
            out[i] = (await work(0)).unwrap()

        for i in range(n):
            nursery.start_soon(one, i)
    return sum(out)


async def hand_chain(n: int) -> int:
    x = 0
    for _ in range(n):
        x = (await work(x)).unwrap()
    return x


def main() -> None:
    leaf = agent(work)
    wf = Workflow.start(int)
    handles: list[Node[int]] = []
    for i in range(N):
        wf, h = wf.add(f"n{i}", leaf)
        handles.append(h)
    wf, out = wf.add("total", pure(total), after=handles)
    fan = wf.build(output=out)

    chain_wf, prev = Workflow.start(int).add("n0", leaf)
    for i in range(1, N):
        chain_wf, prev = chain_wf.add(f"n{i}", leaf, after=prev)
    chain = chain_wf.build(output=prev)

    rows = []
    for label, hand, tree in (("fan-out + fan-in", hand_fan, fan), ("chain", hand_chain, chain)):
        t_hand = median_seconds(lambda: trio.run(hand, N), repeat=5)
        t_ours = median_seconds(lambda: trio.run(run, tree, 0), repeat=5)
        plain = functools.partial(run, tree, 0)
        tally = median_ratio(lambda: trio.run(plain), lambda: trio.run(functools.partial(plain, observer=Tally())))
        recorder = median_ratio(
            lambda: trio.run(plain), lambda: trio.run(functools.partial(plain, observer=Recorder())), repeat=5
        )
        rows.append([f"{label}, {N} nodes", t_hand / N * 1e6, t_ours / N * 1e6, t_ours / t_hand, tally, recorder])
    print(
        table(
            "workflow runs (median; µs per node)",
            ["case", "hand µs", "ours µs", "ours/hand", "observer x", "Recorder x"],
            rows,
        )
    )
    hand_mib = peak_mib(lambda: trio.run(hand_fan, N))
    ours_mib = peak_mib(lambda: trio.run(run, fan, 0))
    print()
    print(
        table(
            f"memory of running the fan-out + fan-in workflow of {N} nodes (peak traced MiB)",
            ["hand MiB", "ours MiB", "ours - hand", "bytes/node over hand"],
            [[hand_mib, ours_mib, ours_mib - hand_mib, (ours_mib - hand_mib) * 2**20 / N]],
        )
    )


if __name__ == "__main__":
    main()
