"""A durable run: crash part-way, resume, and pay only for what was left.

Run it with ``uv run python -m examples.durable_run [JOURNAL.db]``.  Five
symbols are each fetched and analysed three ways (20 leaves).  The first
run is cut short after 0.1 s (standing in for a crash or a deploy); the
second run with the same run id answers the recorded leaves from the
SQLite journal and runs only the rest; a third run runs nothing.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import trio

from combinators import Agent, Journal, each, run
from examples.market import (
    SYMBOLS,
    Analysis,
    UnknownSymbol,
    fetch_quote,
    quality_agent,
    trading_agent,
    value_agent,
)

analyze: Agent[str, tuple[Analysis, Analysis, Analysis], UnknownSymbol] = (
    fetch_quote >> (value_agent | trading_agent | quality_agent)
).named("analyze")

portfolio: Agent[list[str], list[tuple[Analysis, Analysis, Analysis]], UnknownSymbol] = each(analyze).named(
    "portfolio"
)


async def attempts(journal: Journal, run_id: str) -> tuple[int, int]:
    """(leaves recorded, leaf executions so far) according to the journal."""
    records = await journal.records(run_id)
    return sum(r.done for r in records), sum(r.attempts for r in records)


async def main(path: str) -> None:
    journal = Journal.sqlite(path)
    run_id = "portfolio-2026-11-25"
    with trio.move_on_after(0.1):
        await run(portfolio, list(SYMBOLS), journal=journal, run_id=run_id)
    done, executed = await attempts(journal, run_id)
    print(f"first run interrupted: {done} of 20 leaves recorded, {executed} executed")

    result = await run(portfolio, list(SYMBOLS), journal=journal, run_id=run_id)
    _, after = await attempts(journal, run_id)
    print(f"resumed: leaves run on resume: {after - executed}")
    for value, trading, quality in result.unwrap():
        signals = ", ".join(f"{a.analyst} {a.signal} ({a.score:+.2f})" for a in (value, trading, quality))
        print(f"  {value.symbol:5} {signals}")

    again = await run(portfolio, list(SYMBOLS), journal=journal, run_id=run_id)
    _, final = await attempts(journal, run_id)
    assert again == result
    print(f"third run: same result, leaves run on resume: {final - after}")


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else str(Path(tempfile.mkdtemp()) / "journal.db")
    trio.run(main, target)
