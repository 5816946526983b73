"""Many inputs, many outcomes: each, collect, vote, average_confidence, first_success, stream.

Run it with ``uv run python -m examples.many_stocks``.  Five symbols (and
one the price table does not know) go through the market agents of
``examples.market``:

1. ``collect(each(fetch_quote))`` fetches every quote and keeps each outcome;
2. ``vote`` asks three analysts per symbol and keeps the majority signal;
3. ``average_confidence`` gives their mean confidence;
4. ``first_success(..., hedge=...)`` races a slow quote provider against a
   backup that is started only when the first is slow;
5. ``stream`` prints each symbol's verdict the moment it is ready.
"""

from __future__ import annotations

from typing import Never

import trio
from returns.result import Failure, Result, Success

from combinators import (
    AllFailed,
    Confident,
    NoMajority,
    agent,
    average_confidence,
    collect,
    each,
    first_success,
    run,
    stream,
    vote,
)
from examples.market import (
    SYMBOLS,
    Analysis,
    Quote,
    UnknownSymbol,
    fetch_quote,
    quality_agent,
    trading_agent,
    value_agent,
)


def signal_of(analysis: Analysis) -> str:
    return analysis.signal


#: Quote -> the analysis whose signal most analysts share.
majority = vote(value_agent, trading_agent, quality_agent, key=signal_of).named("majority")
#: Quote -> the mean confidence of the three analysts.
confidence = average_confidence(value_agent, trading_agent, quality_agent).named("confidence")
#: str -> (majority analysis, mean confidence), failing on an unknown symbol.
verdict = (fetch_quote >> (majority | confidence)).named("verdict")


@agent
async def slow_provider(symbol: str) -> Result[Quote, UnknownSymbol]:
    """A quote provider having a bad day: 0.5 s per call."""
    await trio.sleep(0.5)
    return await run(fetch_quote, symbol)


#: Hedged quotes: the backup is asked only if the slow provider has not answered in 0.1 s.
hedged_quote = first_success(slow_provider, fetch_quote.named("backup"), hedge=0.1)


def describe(result: Result[tuple[Analysis, Confident[Analysis]], UnknownSymbol | NoMajority | AllFailed[Never]]) -> str:
    match result:
        case Success((top, Confident(mean, outputs, _))):
            opinions = ", ".join(f"{a.analyst}={a.signal}" for a in outputs)
            return f"{top.signal:<5} (mean confidence {mean:.2f}; {opinions})"
        case Failure(NoMajority(candidates, failures)):
            return f"no majority: {candidates}, {failures} failed"
        case Failure(error):
            return f"failed: {error}"
    raise AssertionError(result)


async def main() -> list[str]:
    lines = []
    symbols = [*SYMBOLS, "NOPE"]

    quotes = await run(collect(each(fetch_quote)), symbols, max_concurrency=3)
    fetched = [r.unwrap().symbol for r in quotes.unwrap() if isinstance(r, Success)]
    missing = [r.failure().symbol for r in quotes.unwrap() if isinstance(r, Failure)]
    lines.append(f"collect(each(fetch_quote)): fetched {fetched}, unknown {missing}")

    start = trio.current_time()
    quote = await run(hedged_quote, "AAPL")
    elapsed = trio.current_time() - start
    lines.append(f"first_success(slow, backup, hedge=0.1): {quote.unwrap().symbol} "
                 f"last close {quote.unwrap().last:.2f} in {elapsed:.2f}s (the backup won)")

    lines.append("stream(verdict, symbols), in the order they finish:")
    async with stream(verdict, symbols, max_concurrency=3) as outcomes:
        async for i, result in outcomes:
            lines.append(f"  {symbols[i]:<5} {describe(result)}")
    return lines


if __name__ == "__main__":
    for line in trio.run(main):
        print(line)
