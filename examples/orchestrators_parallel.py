"""Reference scenario 1, orchestrator style: five stocks x two agents, in parallel.

Run it with ``uv run python -m examples.orchestrators_parallel``.  Ten
``AgentTask``s (``AAPL_value``, ``AAPL_trading``, ...) run under a
``ParallelOrchestrator`` with at most 10 tasks at once and a 60-second
timeout per task, as in the reference design
(``ParallelOrchestrator::new().with_concurrency(10).with_timeout(...)``).
Then the same tasks with an aggregator, and streamed as they finish.  The
operator-style version of this scenario is ``examples/parallel_analysis.py``;
the program checks that the orchestrator gives exactly what the plain
combinator tree gives.
"""

from __future__ import annotations

import functools
import operator
from datetime import timedelta

import trio
from returns.result import Failure, Result, Success

from combinators import TimedOut, collect, run
from combinators.orchestration import (
    AgentTask,
    AverageConfidenceAggregator,
    MajorityVoteAggregator,
    NodeCancelled,
    ParallelOrchestrator,
    TaskPriority,
)
from examples.market import SYMBOLS, Analysis, UnknownSymbol, fetch_quote, quality_agent, trading_agent, value_agent

Outcome = Result[Analysis, UnknownSymbol | TimedOut | NodeCancelled]


def analysis_tasks(symbols: tuple[str, ...]) -> list[AgentTask[Analysis, UnknownSymbol]]:
    """Two tasks per symbol; the trading view of TSLA is wanted first."""
    tasks: list[AgentTask[Analysis, UnknownSymbol]] = []
    for symbol in symbols:
        tasks.append(AgentTask(f"{symbol}_value", fetch_quote >> value_agent, symbol))
        trading = AgentTask(f"{symbol}_trading", fetch_quote >> trading_agent, symbol)
        tasks.append(trading.with_priority(TaskPriority.HIGH) if symbol == "TSLA" else trading)
    return tasks


def line(name: str, result: Result[Analysis, object]) -> str:
    match result:
        case Success(Analysis() as a):
            return f"{name:<14} {a.signal:<4} confidence={a.confidence:.2f}"
        case Failure(error):
            return f"{name:<14} failed: {error}"
    return f"{name:<14} {result}"  # pragma: no cover


async def main() -> list[str]:
    tasks = analysis_tasks(SYMBOLS)
    orchestrator = ParallelOrchestrator(max_concurrency=10, timeout=60)
    start = trio.current_time()
    results: dict[str, Outcome] = await orchestrator.execute(tasks)
    took = trio.current_time() - start
    lines = [f"ParallelOrchestrator(max_concurrency=10, timeout=60): {len(results)} tasks in {took:.2f}s"]
    lines += ["  " + line(name, result) for name, result in results.items()]

    # The same tasks as a plain combinator tree: each task is
    # (succeed(symbol) >> agent).timeout(60).named(name), and collect() of
    # their | group keeps every outcome.  (Each task is one chain of leaves,
    # so ten tasks at once are ten leaves at once: run's limit is the same.)
    group = ParallelOrchestrator().with_concurrency(10).with_timeout(timedelta(seconds=60)).collecting_errors()
    collected = await group.execute(tasks)
    trees = [t.as_agent(timeout=60) for t in tasks]
    plain = await run(collect(functools.reduce(operator.or_, trees)), None, max_concurrency=10)
    # group.tree(tasks) is the tree execute runs, limit and timeout included.
    nested = await run(group.tree(tasks), None)
    same = list(collected.values()) == list(plain.unwrap()) and nested.unwrap() == collected
    lines.append(f"same as run(collect(t1 | t2 | ... | t10)): {same}")

    # One symbol, its three analysts' views combined by aggregators.
    analysts = (value_agent, trading_agent, quality_agent)
    googl = [AgentTask(f"GOOGL_{a.name}", fetch_quote >> a, "GOOGL") for a in analysts]
    mean = await ParallelOrchestrator(aggregator=AverageConfidenceAggregator()).execute(googl)
    lines.append(f"GOOGL average confidence: {mean.unwrap().mean:.2f}")
    majority = await ParallelOrchestrator(aggregator=MajorityVoteAggregator(key=lambda a: a.signal)).execute(googl)
    lines.append(f"GOOGL majority vote: {majority.map(lambda a: a.signal).value_or('no majority')}")

    # Streaming: results as each task finishes, at most 4 at once, TSLA's trading task first.
    lines.append("streamed, as they finish (max_concurrency=4):")
    start = trio.current_time()
    async with ParallelOrchestrator(max_concurrency=4).execute_streaming(tasks) as stream:
        async for name, result in stream:
            lines.append(f"  {trio.current_time() - start:.2f}s  " + line(name, result))
    return lines


if __name__ == "__main__":
    for text in trio.run(main):
        print(text)
