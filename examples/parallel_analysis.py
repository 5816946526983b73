"""Reference scenario 1: several analysis agents on five stocks, in parallel.

Run it with ``uv run python -m examples.parallel_analysis``.  For each
symbol one quote is fetched, then three analyses run at once on it; all
five symbols run at once too, at most 10 leaves at a time, each symbol's
analysis bounded by a 60-second timeout.
"""

from __future__ import annotations

import statistics

import trio
from returns.result import Failure, Success

from combinators import Agent, TimedOut, run
from examples.market import (
    SYMBOLS,
    Analysis,
    UnknownSymbol,
    fetch_quote,
    quality_agent,
    trading_agent,
    value_agent,
)

#: str -> (value, trading, quality) analyses of that symbol.
analyze: Agent[str, tuple[Analysis, Analysis, Analysis], UnknownSymbol | TimedOut] = (
    fetch_quote >> (value_agent | trading_agent | quality_agent)
).timeout(60).named("analyze")


def consensus(analyses: tuple[Analysis, ...]) -> str:
    votes = [a.signal for a in analyses]
    top = max(sorted(set(votes)), key=votes.count)
    if votes.count(top) == 1:
        top = "hold"  # three different opinions: no consensus
    confidence = statistics.fmean(a.confidence for a in analyses)
    return f"{top} (confidence {confidence:.2f})"


async def main() -> dict[str, str]:
    out: dict[str, str] = {}

    async def one(symbol: str) -> None:
        match await run(analyze, symbol, max_concurrency=10):
            case Success(analyses):
                detail = ", ".join(f"{a.analyst}={a.signal}" for a in analyses)
                out[symbol] = f"{consensus(analyses):<24} {detail}"
            case Failure(error):
                out[symbol] = f"failed: {error}"

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for symbol in SYMBOLS:
            nursery.start_soon(one, symbol)
    out["elapsed"] = f"{trio.current_time() - start:.2f}s"
    return out


if __name__ == "__main__":
    print("Parallel analysis: fetch >> (value | trading | quality), five symbols at once")
    for key, line in trio.run(main).items():
        print(f"  {key:<7} {line}")
