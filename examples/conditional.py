"""Conditional agent execution: route each stock to the analysis its prices call for.

Run it with ``uv run python -m examples.conditional`` (or
``uv run python examples/conditional.py``).

The regime of a symbol's prices picks the analyst: a volatile stock gets
the quality (risk) analysis, a trending one the trading (momentum)
analysis, a steady one the value analysis.  ``switch`` keeps all three
analysts in the tree — drawn, observed and typed — and runs only the
chosen one, so each symbol takes the time of its own branch.  ``when``
then words the verdict.  The same routing written with ``bind`` gives the
same answers, but its tree only knows the chosen analyst at run time.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import Literal, Never

if __package__ in (None, ""):  # run as a script: make `examples` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trio
from returns.result import Result, Success

from combinators import Agent, NoBranch, pure, run, switch, when
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

Regime = Literal["volatile", "trending", "steady"]


def regime(quote: Quote) -> Regime:
    """Volatile above 1.9% daily moves; trending when the 5-day mean is 2% off the 20-day."""
    closes = quote.closes
    daily = [b / a - 1 for a, b in zip(closes, closes[1:], strict=False)]
    if statistics.pstdev(daily) > 0.019:
        return "volatile"
    long = statistics.fmean(closes[-20:])
    if abs(statistics.fmean(closes[-5:]) - long) / long > 0.02:
        return "trending"
    return "steady"


ANALYSTS: dict[Regime, Agent[Quote, Analysis, Never]] = {
    "volatile": quality_agent,
    "trending": trading_agent,
    "steady": value_agent,
}


def is_sure(analysis: Analysis) -> bool:
    return analysis.confidence >= 0.75


def confident(analysis: Analysis) -> str:
    return f"{analysis.signal.upper()} (score {analysis.score:+.2f}, confidence {analysis.confidence:.0%})"


def tentative(analysis: Analysis) -> str:
    return f"{analysis.signal} at best (score {analysis.score:+.2f}, only {analysis.confidence:.0%} sure)"


#: str -> the chosen analyst's view; the error type says a regime with no
#: analyst is possible (the switch has no default).
analysis: Agent[str, Analysis, UnknownSymbol | NoBranch] = fetch_quote >> switch(regime, ANALYSTS).named(
    "by_regime"
)

#: ... worded by how sure the analyst is.
routed: Agent[str, str, UnknownSymbol | NoBranch] = (
    analysis >> when(is_sure, pure(confident), pure(tentative)).named("wording")
).named("routed")

#: The same choice made by ``bind``: equal answers, but an opaque tree.
bound: Agent[str, Analysis, UnknownSymbol] = fetch_quote.bind(lambda q: ANALYSTS[regime(q)]).named("bound")


def describe(result: Result[str, UnknownSymbol | NoBranch]) -> str:
    match result:
        case Success(str() as verdict):
            return verdict
        case _:
            return f"failed: {result.failure()!r}"


async def main() -> list[str]:
    lines = [
        "routed tree: " + " -> ".join(node.name for node in routed.walk() if not node.children()),
        "bound tree:  " + " -> ".join(node.name for node in bound.walk() if not node.children()),
    ]
    for symbol in SYMBOLS:
        start = trio.current_time()
        result = await run(routed, symbol)
        took = trio.current_time() - start
        quote = (await run(fetch_quote, symbol)).unwrap()
        analyst = ANALYSTS[regime(quote)].name
        same = await run(bound, symbol) == await run(analysis, symbol)
        lines.append(
            f"{symbol:<5} {regime(quote):<8} -> {analyst:<8} {describe(result)}"
            f"  [{took:.2f}s]{'' if same else '  (bind disagrees!)'}"
        )
    return lines


if __name__ == "__main__":
    print("Conditional execution: fetch >> switch(regime, analysts) >> when(confident, ...)")
    for line in trio.run(main):
        print(" ", line)
