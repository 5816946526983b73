"""See a run: events, run report, Perfetto trace, Mermaid drawing and JSON.

Run it with ``uv run python -m examples.observe_run [SYMBOL] [TRACE_FILE]``.
The analysis runs in trio's virtual time (a ``MockClock``), so the times in
the report are exactly the sleeps of the agents in ``examples.market``.
Open the trace file in https://ui.perfetto.dev.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import trio
import trio.testing
from returns.result import Result

from combinators import (
    Agent,
    Backoff,
    Recorder,
    RunReport,
    TimedOut,
    build_report,
    json_converter,
    run,
    to_mermaid,
    write_trace,
)
from examples.market import (
    Analysis,
    UnknownSymbol,
    fetch_quote,
    quality_agent,
    trading_agent,
    value_agent,
)

#: str -> three analyses; the fetch is retried, the analyses share a deadline.
analyze: Agent[str, tuple[Analysis, Analysis, Analysis], UnknownSymbol | TimedOut] = (
    fetch_quote.retry(2, backoff=Backoff(base=0.5))
    >> (value_agent | trading_agent | quality_agent).timeout(1).named("analyses")
).named("analyze")


async def observe(symbol: str) -> tuple[Result[tuple[Analysis, Analysis, Analysis], UnknownSymbol | TimedOut], Recorder]:
    recorder = Recorder()
    result = await run(analyze, symbol, observer=recorder)
    return result, recorder


def main(symbol: str, trace_file: Path) -> RunReport:
    result, recorder = trio.run(observe, symbol, clock=trio.testing.MockClock(autojump_threshold=0))
    report = build_report(recorder.events)
    write_trace(recorder.events, trace_file)
    print(f"analyze({symbol!r}) gave, as JSON:")
    print(json.dumps(json_converter.unstructure(result), indent=2))
    print("\nRun report (times in seconds of trio time):")
    print(report.table())
    print(f"\n{len(recorder.events)} events; Perfetto trace written to {trace_file}")
    print("\nThe tree as a Mermaid drawing:")
    print(to_mermaid(analyze), end="")
    return report


if __name__ == "__main__":
    chosen = sys.argv[1] if len(sys.argv) > 1 else "MSFT"
    target = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(tempfile.gettempdir()) / "combinators-trace.json"
    main(chosen, target)
