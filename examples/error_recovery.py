"""Reference scenario 4: error recovery with a fallback, in both styles.

Run it with ``uv run python -m examples.error_recovery [SYMBOL ...]``.

A *primary* analysis reads a premium feed that is down for AMZN and hangs
for TSLA; it is bounded by a timeout.  When it fails, the *secondary*
analysis (the value analyst, from the price table alone) takes over, and a
recommendation is made from whichever analysis came through.  An unknown
symbol has no fallback: the chain stops there.

* operator style: ``fetch_quote >> primary.fallback(secondary) >> recommend``;
* orchestrator style: an ``AgentChain`` with ``then_with_fallback``, run by
  ``SequentialOrchestrator(stop_on_error=False, continue_on_failure=True)``,
  which also reports the steps that failed on the way.

The program checks that both styles give the same results.
"""

from __future__ import annotations

import statistics
import sys
from typing import Never

import attrs
import trio
from returns.result import Failure, Result, Success

from combinators import Agent, TimedOut, agent, pure, run
from combinators.orchestration import AgentChain, SequentialOrchestrator, StepFailure
from examples.market import SYMBOLS, Analysis, Quote, Signal, UnknownSymbol, fetch_quote, value_agent

#: How long the primary analysis may take (trio seconds).
PRIMARY_TIMEOUT = 0.3


@attrs.frozen
class FeedDown:
    """The premium feed answered with an error."""

    symbol: str
    status: int


@agent
async def premium_analysis(quote: Quote) -> Result[Analysis, FeedDown]:
    """Momentum and value blended from the premium feed (down for AMZN, hanging for TSLA)."""
    if quote.symbol == "AMZN":
        await trio.sleep(0.02)
        return Failure(FeedDown(quote.symbol, 503))
    await trio.sleep(5.0 if quote.symbol == "TSLA" else 0.1)
    mean = statistics.fmean(quote.closes)
    momentum = (statistics.fmean(quote.closes[-5:]) - mean) / mean
    score = max(-1.0, min(1.0, momentum * 20))
    signal: Signal = "buy" if score > 0.15 else "sell" if score < -0.15 else "hold"
    return Success(Analysis(quote.symbol, "primary", signal, score, 0.9))


primary: Agent[Quote, Analysis, FeedDown | TimedOut] = premium_analysis.timeout(PRIMARY_TIMEOUT).named("primary")
secondary: Agent[Quote, Analysis, Never] = value_agent.named("secondary")


def recommendation(a: Analysis) -> str:
    return f"{a.symbol}: {a.signal} (from the {a.analyst} analysis, confidence {a.confidence:.2f})"


recommend = pure(recommendation).named("recommend")

# -- operator style -------------------------------------------------------------

#: str -> str; only an unknown symbol can fail it (the fallback absorbs the rest).
with_fallback: Agent[str, str, UnknownSymbol] = fetch_quote >> primary.fallback(secondary) >> recommend

# -- orchestrator style ---------------------------------------------------------

chain: AgentChain[str, str, UnknownSymbol] = (
    AgentChain().then(fetch_quote).then_with_fallback(primary, fallback=secondary).then(recommend)
)
orchestrator = SequentialOrchestrator(stop_on_error=False, continue_on_failure=True)


def failed_steps(failures: tuple[StepFailure, ...]) -> str:
    if not failures:
        return "no step failed"
    return "; ".join(f"{f.step} failed: {f.error}" for f in failures)


async def main(symbols: list[str]) -> list[str]:
    lines = []
    same = True
    for symbol in symbols:
        start = trio.current_time()
        outcome = await orchestrator.execute(chain, symbol)
        took = trio.current_time() - start
        match outcome.result:
            case Success(text):
                lines.append(f"{text}  [{took:.2f}s]")
            case Failure(error):
                lines.append(f"{symbol}: no recommendation, {error}  [{took:.2f}s]")
        lines.append(f"    {failed_steps(outcome.failures)}")
        same = same and outcome.result == await run(with_fallback, symbol)
    lines.append(f"operator style gives the same results: {same}")
    return lines


if __name__ == "__main__":
    print("Error recovery: fetch >> primary.timeout(0.3).fallback(secondary) >> recommend")
    for text in trio.run(main, sys.argv[1:] or [*SYMBOLS, "NFLX"]):
        print(text)
