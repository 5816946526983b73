"""Reference scenario 2, orchestrator style: a sequential analysis pipeline.

Run it with ``uv run python -m examples.orchestrators_sequential [SYMBOL ...]``.
An ``AgentChain`` of fetch -> value -> quality -> trading (fed through a
transform) -> Kelly position size, run by a ``SequentialOrchestrator`` that
stops at the first error.  The operator-style version is
``examples/pipeline.py``; the chain builds exactly that ``>>`` tree, and the
program checks that both give the same answer.
"""

from __future__ import annotations

import sys

import trio

from combinators import run
from combinators.orchestration import AgentChain, SequentialOrchestrator
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
from examples.pipeline import describe, pipeline

#: str -> Position, failing with UnknownSymbol or NoEdge: mypy infers the chain's type.
chain: AgentChain[str, Position, UnknownSymbol | NoEdge] = (
    AgentChain()
    .then(fetch_quote)
    .then(value)
    .then(quality)
    .then_with_transform(trading_signal, to_trade_setup)
    .then(position_size)
)


async def main(symbols: list[str]) -> list[str]:
    orchestrator = SequentialOrchestrator(stop_on_error=True)
    lines = []
    same = True
    for symbol in symbols:
        start = trio.current_time()
        result = await orchestrator.execute(chain, symbol)
        took = trio.current_time() - start
        lines.append(f"{describe(symbol, result)}  [{took:.2f}s]")
        same = same and result == await run(pipeline, symbol)
    lines.append(f"same results as the operator-style pipeline: {same}")
    return lines


if __name__ == "__main__":
    chosen = sys.argv[1:] or list(SYMBOLS)
    print("SequentialOrchestrator: AgentChain().then(fetch).then(value).then(quality)")
    print("  .then_with_transform(trading_signal, to_trade_setup).then(position_size)")
    for text in trio.run(main, chosen):
        print(" ", text)
