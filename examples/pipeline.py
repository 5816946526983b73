"""Reference scenario 2: a sequential pipeline, value -> quality -> trading -> Kelly size.

Run it with ``uv run python -m examples.pipeline [SYMBOL ...]``.  The
``transform`` between ``quality`` and ``trading_signal`` turns a quality
report into the trading agent's input, as ``then_with_transform`` does in
the reference design.
"""

from __future__ import annotations

import sys

import trio
from returns.result import Failure, Result, Success

from combinators import Agent, run
from examples.market import (
    SYMBOLS,
    NoEdge,
    Position,
    UnknownSymbol,
    fetch_quote,
    position_size,
    quality,
    to_trade_setup,
    trading_signal,
    value,
)

#: str -> Position, failing with UnknownSymbol or NoEdge; mypy infers all of it.
pipeline: Agent[str, Position, UnknownSymbol | NoEdge] = (
    fetch_quote >> value >> quality.transform(to_trade_setup) >> trading_signal >> position_size
).named("pipeline")


def describe(symbol: str, result: Result[Position, UnknownSymbol | NoEdge]) -> str:
    match result:
        case Success(Position() as position):
            return position.describe()
        case Failure(NoEdge(_, reason)):
            return f"{symbol}: no trade ({reason})"
        case Failure(UnknownSymbol(name)):
            return f"{symbol}: unknown symbol {name!r}"
    return f"{symbol}: {result}"  # pragma: no cover - exhaustive above


async def main(symbols: list[str]) -> list[str]:
    lines = []
    for symbol in symbols:
        start = trio.current_time()
        result = await run(pipeline, symbol)
        took = trio.current_time() - start
        lines.append(f"{describe(symbol, result)}  [{took:.2f}s]")
    return lines


if __name__ == "__main__":
    chosen = sys.argv[1:] or list(SYMBOLS)
    print("Sequential pipeline: fetch >> value >> quality.transform(...) >> trading >> kelly")
    for line in trio.run(main, chosen):
        print(" ", line)
