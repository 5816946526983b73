"""Multi-stock analysis with a CPU-heavy scoring leaf off trio's thread.

Run it with ``uv run python examples/cpu_scoring.py [--executor NAME]``.

Every symbol's quote is fetched (I/O, in the trio task), then three
analyses run at once on it: two cheap ones in the trio task and a Monte
Carlo risk score (bootstrapped price paths, pure Python, about a third of a
second of CPU per symbol) on an executor.  The whole tree is the same for
every executor; moving the scoring from worker processes to a Ray cluster
is one changed line::

    executor = processes(2)               # worker processes on this machine
    executor = ray_cluster(num_cpus=2)    # Ray tasks (a local cluster here)

``--executor in_task`` runs the scoring in the trio task, for comparison:
each score then blocks trio (and every other symbol) while it computes.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import zlib
from pathlib import Path

import attrs
import trio
from returns.result import Failure, Success

if __package__ in (None, ""):  # run as a script: make ``examples`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from combinators import Agent, Crashed, Executor, TimedOut, each, in_task, lift, processes, run
from examples.market import SYMBOLS, Analysis, Quote, UnknownSymbol, fetch_quote, trading_agent, value_agent

PATHS = 50_000
HORIZON = 20  # trading days


@attrs.frozen
class Risk:
    """Monte Carlo view of the next ``HORIZON`` days from bootstrapped daily returns."""

    symbol: str
    p_gain: float  # probability the price is higher after HORIZON days
    var_5: float  # 5% value at risk: the loss exceeded in 1 path out of 20


def risk_score(quote: Quote) -> Risk:
    """CPU-heavy scoring: simulate ``PATHS`` price paths by resampling past returns.

    A plain function at module level, so it pickles to a worker process or
    a Ray task; seeded from the symbol, so every executor gives the same
    numbers.
    """
    closes = quote.closes
    rets = [b / a for a, b in zip(closes, closes[1:], strict=False)]
    rng = random.Random(zlib.crc32(quote.symbol.encode()))
    finals: list[float] = []
    for _ in range(PATHS):
        growth = 1.0
        for _ in range(HORIZON):
            growth *= rets[rng.randrange(len(rets))]
        finals.append(growth)
    finals.sort()
    p_gain = sum(1 for g in finals if g > 1.0) / PATHS
    var_5 = max(0.0, 1.0 - finals[PATHS // 20])
    return Risk(quote.symbol, p_gain, var_5)


Row = tuple[Analysis, Analysis, Risk]


def analysis(executor: Executor) -> Agent[list[str], list[Row], UnknownSymbol | Crashed | TimedOut]:
    """All symbols at once: fetch, then value | trading | risk (risk on ``executor``)."""
    risk = lift(risk_score).named("risk").on(executor)
    per_symbol = (fetch_quote >> (value_agent | trading_agent | risk)).named("symbol")
    return each(per_symbol).timeout(120).named("analysis")


def choose(name: str) -> Executor:
    """The one line that changes between executors."""
    if name == "processes":
        return processes(2)
    if name == "ray":
        from combinators import ray_cluster

        cluster = ray_cluster(num_cpus=2)
        cluster.connect()  # optional: start the cluster now, not on the first leaf
        return cluster
    return in_task()


def verdict(value: Analysis, trading: Analysis, risk: Risk) -> str:
    votes = [value.signal, trading.signal]
    if risk.p_gain > 0.55:
        votes.append("buy")
    elif risk.p_gain < 0.45:
        votes.append("sell")
    else:
        votes.append("hold")
    top = max(sorted(set(votes)), key=votes.count)
    return top if votes.count(top) > 1 else "hold"


async def main(executor: Executor) -> list[str]:
    """Run the analysis on ``executor``; the lines to print."""
    start = time.perf_counter()
    result = await run(analysis(executor), list(SYMBOLS))
    elapsed = time.perf_counter() - start
    lines = [f"executor: {executor.name}"]
    match result:
        case Success(rows):
            lines.append(f"{'symbol':<7}{'value':<7}{'trading':<9}{'P(gain)':>8}{'VaR 5%':>8}  verdict")
            for value, trading, risk in rows:
                lines.append(
                    f"{risk.symbol:<7}{value.signal:<7}{trading.signal:<9}"
                    f"{risk.p_gain:>8.1%}{risk.var_5:>8.1%}  {verdict(value, trading, risk)}"
                )
        case Failure(error):
            lines.append(f"failed: {error}")
    lines.append(f"wall time: {elapsed:.2f}s")
    return lines


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--executor", choices=["in_task", "processes", "ray"], default="processes")
    args = parser.parse_args()
    for line in trio.run(main, choose(args.executor)):
        print(line)
