"""Spend control: estimate first, stop at a budget, keep what finished, never pay twice.

Run it with ``uv run python -m examples.budgeted_batch [CACHE.db]``.  A fake
"LLM" summarises 200 documents; each call declares the most it may use
(``.costs``) and charges what it really used (``charge``, as a real client
would from the response's usage field).  The program

1. prints ``estimate(...)``: what the batch can cost at most (every retry
   and the fallback model too) and when nothing fails;
2. runs the batch under a budget of $0.15: calls are reserved before they
   start, so the batch stops part-way without ever going over, and
   ``collect`` keeps every summary that finished;
3. runs it again with a fresh $0.15: the summaries of the first run come
   from the SQLite cache (free, no call), and the budget pays for more.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import trio
from returns.result import Failure, Result, Success

from combinators import (
    Budget,
    Cache,
    OverBudget,
    Recorder,
    Usage,
    agent,
    build_report,
    charge,
    collect,
    each,
    estimate,
    run,
    versioned,
)

DOCS = [f"document {i}: " + "lorem ipsum " * (5 + i % 20) for i in range(200)]
#: What one call may use at most: the prompt cap, the answer cap, their price.
ONE_CALL = Usage(calls=1, input_tokens=400, output_tokens=100, cost=0.004)


def _price(tokens_in: int, tokens_out: int) -> float:
    return round(tokens_in * 0.000005 + tokens_out * 0.00002, 6)


@agent
async def summarise(doc: str) -> Result[str, str]:
    """A stand-in for an LLM call: 10 ms, and a bill that grows with the document."""
    await trio.sleep(0.01)
    tokens_in, tokens_out = len(doc.split()) * 2, 40
    charge(Usage(calls=1, input_tokens=tokens_in, output_tokens=tokens_out, cost=_price(tokens_in, tokens_out)))
    return Success(doc.split(":")[0] + " in short")


@agent
async def summarise_small(doc: str) -> Result[str, str]:
    """The cheaper fallback model."""
    await trio.sleep(0.01)
    return Success(doc.split(":")[0] + " (small model)")


def _worth_retrying(error: object) -> bool:
    return not isinstance(error, OverBudget)


async def main(path: str) -> None:
    store = Cache.sqlite(path)
    # Retry real failures, not a refusal by the budget (it would only be refused again).
    one = versioned(summarise, "prompt-v1").costs(ONE_CALL).cache(store).retry(2, when=_worth_retrying)
    small = summarise_small.costs(Usage(calls=1, input_tokens=400, output_tokens=100, cost=0.001))
    tree = collect(each(one.fallback(small).limit(8)))

    est = estimate(tree, DOCS)
    print(f"estimate for {len(DOCS)} documents")
    print(f"  most:  {est.most.calls} calls, ${est.most.cost:.2f}")
    print(f"  happy: {est.happy.calls} calls, ${est.happy.cost:.2f}")

    for attempt in (1, 2):
        budget = Budget(Usage(cost=0.15), name=f"run {attempt}")
        rec = Recorder()
        outcomes = (await run(tree, DOCS, budget=budget, observer=rec)).unwrap()
        done = [r for r in outcomes if isinstance(r, Success)]
        stopped = [r for r in outcomes if isinstance(r, Failure) and isinstance(r.failure(), OverBudget)]
        report = build_report(rec.events)
        hits = sum(n.cache_hits for n in report.nodes)
        spent = budget.spent.cost or 0.0
        print(
            f"run {attempt}: {len(done)} summarised ({hits} from the cache), "
            f"{len(stopped)} stopped by the budget; spent ${spent:.4f} of $0.15"
        )
        assert spent <= 0.15
    store.close()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        trio.run(main, sys.argv[1] if len(sys.argv) > 1 else str(Path(tmp) / "cache.db"))
