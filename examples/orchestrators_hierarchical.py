"""Reference scenario 3, orchestrator style: fetch -> analyze -> synthesize.

Run it with ``uv run python -m examples.orchestrators_hierarchical [SYMBOL ...]``.
A ``HierarchicalOrchestrator`` with three nodes, as in the reference design:

* ``fetch_data``: two sources at once (``OrchestratorNode.parallel``);
* ``analyze``: reconcile the two quotes, then three analysts at once;
* ``synthesize``: a sequential ``AgentChain`` (weigh, then decide).

Data follows the dependencies: ``analyze`` receives ``fetch_data``'s output,
``synthesize`` receives ``analyze``'s.  The orchestrator runs one
``Workflow``; the operator/workflow-style version of the same scenario is
``examples/hierarchical.py``, and the program checks that both recommend the
same thing.  An unknown symbol shows how a failure skips the later nodes.
"""

from __future__ import annotations

import sys
from typing import Any

import trio
from returns.result import Failure, Result, Success

from combinators import pure, run
from combinators.orchestration import AgentChain, HierarchicalOrchestrator, NodeSkipped, OrchestratorNode
from examples.hierarchical import Recommendation, alpha_vantage, analysis, decide, reconcile, weigh
from examples.market import SYMBOLS, fetch_quote, quality_agent, trading_agent, value_agent

orchestrator = (
    HierarchicalOrchestrator()
    .add_node("fetch_data", OrchestratorNode.parallel(fetch_quote, alpha_vantage))
    .add_node("analyze", pure(reconcile) >> OrchestratorNode.parallel(value_agent, quality_agent, trading_agent))
    .add_node("synthesize", AgentChain().then(pure(weigh)).then(pure(decide)))
    .add_dependency("analyze", "fetch_data")
    .add_dependency("synthesize", "analyze")
)


def show(name: str, result: Result[Any, Any]) -> str:
    match result:
        case Success(Recommendation() as r):
            return f"{name}: {r.describe()}"
        case Success(tuple() as values):
            return f"{name}: {len(values)} results"
        case Success(other):
            return f"{name}: {other}"
        case Failure(NodeSkipped(because)):
            return f"{name}: skipped, {because!r} did not succeed"
        case Failure(error):
            return f"{name}: FAILED {error}"
    return f"{name}: {result}"  # pragma: no cover


async def main(symbols: list[str]) -> list[str]:
    lines = []
    for symbol in symbols:
        start = trio.current_time()
        results = await orchestrator.execute(symbol)
        took = trio.current_time() - start
        lines.append(f"{symbol} ({took:.2f}s)")
        lines += ["  " + show(name, result) for name, result in results.items()]
        if isinstance(results["synthesize"], Success):
            same = results["synthesize"] == await run(analysis, symbol)
            lines.append(f"  same recommendation as examples.hierarchical: {same}")
    return lines


if __name__ == "__main__":
    print("HierarchicalOrchestrator: fetch_data (2 sources) -> analyze (3 analysts) -> synthesize (chain)")
    for text in trio.run(main, sys.argv[1:] or list(SYMBOLS)):
        print(text)
