"""Reference scenario 3: a hierarchical workflow.

Per symbol: fetch from two sources at once -> reconcile -> three analyses at
once (value, quality, trading) -> a sequential synthesis.  Five of those
per-symbol workflows run side by side as nodes of an outer workflow whose
last node ranks them: workflows nest, and node paths show it
(``board/AAPL/analysis/value``).

Run it with ``uv run python examples/hierarchical.py [SYMBOL ...]``; an
unknown symbol shows what a failed workflow reports.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Never

import attrs
import trio
from returns.result import Failure, Result, Success

if __package__ in (None, ""):  # run as a script: make `examples` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from combinators import (  # noqa: E402
    Agent,
    NodeFailed,
    NodeSucceeded,
    Workflow,
    WorkflowFailed,
    agent,
    pure,
    run,
    succeed,
)
from examples.market import (  # noqa: E402
    SYMBOLS,
    Analysis,
    Quote,
    Signal,
    UnknownSymbol,
    fetch_quote,
    price_table,
    quality_agent,
    trading_agent,
    value_agent,
)

# -- the two data sources -------------------------------------------------------


@agent
async def alpha_vantage(symbol: str) -> Result[Quote, UnknownSymbol]:
    """A second source: only the last 30 closes, a little slower (80 ms)."""
    await trio.sleep(0.08)
    closes = price_table().get(symbol.upper())
    if closes is None:
        return Failure(UnknownSymbol(symbol))
    return Success(Quote(symbol.upper(), closes[-30:]))


def reconcile(quotes: tuple[Quote, Quote]) -> Quote:
    """Keep the longer history, with the two sources' last closes averaged."""
    long, short = sorted(quotes, key=lambda q: len(q.closes), reverse=True)
    last = (long.last + short.last) / 2
    return Quote(long.symbol, long.closes[:-1] + (last,))


# -- the sequential synthesis -------------------------------------------------------


@attrs.frozen
class Consensus:
    symbol: str
    score: float  # confidence-weighted mean of the analysts' scores
    confidence: float
    votes: tuple[tuple[str, Signal], ...]


@attrs.frozen
class Recommendation:
    symbol: str
    signal: Signal
    score: float
    confidence: float
    votes: tuple[tuple[str, Signal], ...]

    def describe(self) -> str:
        votes = ", ".join(f"{who} {what}" for who, what in self.votes)
        return f"{self.symbol:5} {self.signal:4}  score {self.score:+.2f}  confidence {self.confidence:.2f}  ({votes})"


def weigh(analyses: tuple[Analysis, Analysis, Analysis]) -> Consensus:
    total = sum(a.confidence for a in analyses)
    score = sum(a.score * a.confidence for a in analyses) / total
    return Consensus(
        analyses[0].symbol,
        score,
        statistics.fmean(a.confidence for a in analyses),
        tuple((a.analyst, a.signal) for a in analyses),
    )


def decide(consensus: Consensus) -> Recommendation:
    signal: Signal = "buy" if consensus.score > 0.1 else "sell" if consensus.score < -0.1 else "hold"
    return Recommendation(consensus.symbol, signal, consensus.score, consensus.confidence, consensus.votes)


synthesis: Agent[tuple[Analysis, Analysis, Analysis], Recommendation, Never] = (
    pure(weigh) >> pure(decide)
).named("synthesis")

# -- one symbol: a workflow ---------------------------------------------------------

wf = Workflow.start(str, errors=UnknownSymbol)
wf, yahoo = wf.add("yahoo", fetch_quote)
wf, alpha = wf.add("alpha_vantage", alpha_vantage)
wf, quote = wf.add("reconcile", pure(reconcile), after=(yahoo, alpha))
wf, val = wf.add("value", value_agent, after=quote)
wf, qual = wf.add("quality", quality_agent, after=quote)
wf, trade = wf.add("trading", trading_agent, after=quote)
wf, verdict = wf.add("synthesize", synthesis, after=(val, qual, trade))

#: str -> Recommendation; a failure is a WorkflowFailed holding every node's outcome.
analysis: Agent[str, Recommendation, WorkflowFailed[UnknownSymbol]] = wf.build(output=verdict).named("analysis")


# -- the board: one node per symbol, then a ranking ---------------------------------


def rank(recommendations: tuple[Recommendation, ...]) -> list[Recommendation]:
    return sorted(recommendations, key=lambda r: r.score, reverse=True)


def board_for(symbols: Sequence[str]) -> Agent[object, list[Recommendation], WorkflowFailed[object]]:
    board = Workflow.start(object)
    per_symbol = []
    for symbol in symbols:
        board, handle = board.add(symbol, succeed(symbol) >> analysis)
        per_symbol.append(handle)
    board, ranking = board.add("rank", pure(rank), after=per_symbol)
    return board.build(output=ranking).named("board")


def explain(error: WorkflowFailed[object], indent: str = "  ") -> list[str]:
    """Every node's outcome, descending into nested workflows."""
    lines: list[str] = []
    for name, outcome in error.items:
        match outcome:
            case NodeSucceeded():
                lines.append(f"{indent}{name}: succeeded")
            case NodeFailed(error=WorkflowFailed() as inner):
                lines.append(f"{indent}{name}: failed, inside:")
                lines.extend(explain(inner, indent + "    "))
            case _:
                lines.append(f"{indent}{name}: {outcome}")
    return lines


async def main(symbols: Sequence[str]) -> list[str]:
    start = trio.current_time()
    result = await run(board_for(symbols), None)
    took = trio.current_time() - start
    lines = [f"board of {len(symbols)} symbols took {took:.2f}s of trio time"]
    if isinstance(result, Success):
        lines.extend("  " + r.describe() for r in result.unwrap())
    else:
        lines.append("the board failed; every node's outcome:")
        lines.extend(explain(result.failure()))
    return lines


def report(symbols: Sequence[str], clock: trio.abc.Clock | None = None) -> str:
    """Run the board and give the printable report (tests pass a MockClock)."""
    return "\n".join(trio.run(main, symbols, clock=clock))


if __name__ == "__main__":
    print("Hierarchical workflow: (yahoo | alpha_vantage) -> reconcile -> (value | quality | trading) -> synthesize")
    print(report(sys.argv[1:] or SYMBOLS))
