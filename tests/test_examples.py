"""Every program in examples/ runs as ``python -m examples.<name>`` and prints its results.

The programs are started all at once (one subprocess each, from the project
root) and their output is checked line by line against what the price table
gives.  ``EXAMPLES`` lists them explicitly; a test fails when a program in
examples/ is missing from it, so a new example cannot go unrun.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOT_PROGRAMS = {"__init__", "market"}  # the package marker and the shared data module

Check = Callable[[str], None]


def contains(*needles: str) -> Check:
    def check(out: str) -> None:
        for needle in needles:
            assert needle in out, f"{needle!r} not in the output:\n{out}"

    return check


def matches(*patterns: str) -> Check:
    def check(out: str) -> None:
        for pattern in patterns:
            assert re.search(pattern, out, re.M), f"{pattern!r} does not match the output:\n{out}"

    return check


def both(*checks: Check) -> Check:
    def check(out: str) -> None:
        for c in checks:
            c(out)

    return check


TIME = r"\[\d+\.\d\ds\]"

EXAMPLES: dict[str, Check] = {
    "budgeted_batch": matches(
        r"most:  800 calls, \$2\.60",
        r"happy: 200 calls, \$0\.80",
        r"^run 1: \d+ summarised \(0 from the cache\), [1-9]\d* stopped by the budget; spent \$0\.1[0-5]\d\d of \$0\.15",
        r"^run 2: 200 summarised \([1-9]\d* from the cache\), 0 stopped by the budget",
    ),
    "conditional": matches(
        r"AAPL\s+trending -> trading\s+sell at best \(score -0\.50",
        r"GOOGL trending -> trading\s+SELL \(score -0\.67, confidence 77%\)",
        r"TSLA\s+volatile -> quality\s+sell at best",
    ),
    "cpu_scoring": matches(r"^GOOGL\s+sell\s+sell\s+57\.2%\s+11\.6%\s+sell$", r"^AAPL\s+hold\s+sell\s+71\.8%"),
    # How far the interrupted first run gets depends on the machine (it is cut
    # after 0.1 s of real time); the resumed result and the third run do not.
    "durable_run": both(
        matches(r"first run interrupted: \d+ of 20 leaves recorded", r"resumed: leaves run on resume: \d+"),
        contains(
            "third run: same result, leaves run on resume: 0",
            "GOOGL value sell (-0.18), trading sell (-0.67), quality hold (-0.10)",
        ),
    ),
    "hierarchical": both(
        contains("board of 5 symbols took"),
        matches(r"GOOGL sell\s+score -0\.33\s+confidence 0\.71", r"MSFT\s+hold\s+score -0\.02"),
    ),
    "many_stocks": contains(
        "fetched ['AAPL', 'MSFT', 'GOOGL', 'AMZN', 'TSLA'], unknown ['NOPE']",
        "NOPE  failed: UnknownSymbol(symbol='NOPE')",
        "GOOGL sell  (mean confidence 0.71; value=sell, trading=sell, quality=hold)",
    ),
    "observe_run": contains('"symbol": "MSFT"', '"signal": "sell"', "critical path"),
    "parallel_analysis": matches(
        r"GOOGL\s+sell \(confidence 0\.71\)\s+value=sell, trading=sell, quality=hold",
        r"AAPL\s+hold \(confidence 0\.67\)",
        r"elapsed 0\.\d\ds",
    ),
    "pipeline": matches(
        rf"MSFT: buy, stake 30\.8% of capital \(Kelly\)  {TIME}",
        rf"GOOGL: sell, stake 40\.4% of capital \(Kelly\)  {TIME}",
        r"AAPL: no trade \(win probability 0\.49",
    ),
    "refine_loop": contains("TSLA  [2 round(s)", "gave up after 2 rounds", "MSFT  [1 round(s)"),
    # -- the orchestrator-style scenarios (combinators.orchestration) --
    "orchestrators_parallel": both(
        matches(r"ParallelOrchestrator\(max_concurrency=10, timeout=60\): 10 tasks in 0\.\d\ds"),
        matches(r"^  GOOGL_trading\s+sell confidence=0\.77$", r"^  TSLA_value\s+buy\s+confidence=0\.66$"),
        contains(
            "same as run(collect(t1 | t2 | ... | t10)): True",
            "GOOGL average confidence: 0.71",
            "GOOGL majority vote: sell",
            "streamed, as they finish (max_concurrency=4):",
        ),
    ),
    "orchestrators_sequential": both(
        matches(
            rf"MSFT: buy, stake 30\.8% of capital \(Kelly\)  {TIME}",
            rf"AMZN: buy, stake 30\.0% of capital \(Kelly\)  {TIME}",
            r"TSLA: no trade \(win probability 0\.50",
        ),
        contains("same results as the operator-style pipeline: True"),
    ),
    "orchestrators_hierarchical": both(
        matches(r"synthesize: GOOGL sell\s+score -0\.33\s+confidence 0\.71"),
        contains("same recommendation as examples.hierarchical: True"),
        lambda out: _count(out, "same recommendation as examples.hierarchical: True", 5),
    ),
    # -- asyncio hosts (combinators.aio, docs/asyncio.md) --
    "service": both(
        matches(r"^a\s+200 \{'id': 'a', 'summary': 'Structured concurrency makes\.\.\.', 'label': 'long'"),
        matches(r"^c\s+502 \{'error': \"LLMError\(reason='empty document'\)\"\}", r"^slow\s+504 "),
        contains("dropped: started ['fetch'], cancelled ['fetch']"),
        matches(r"LLM calls at once, at most: [123] \(limiter of 3\)"),
    ),
    "llm_http": both(
        contains(
            "httpx   'busy servers ask clients to wait': 6 words, the longest 'servers'",
            "httpx   'explain trio guest mode briefly': 5 words, the longest 'explain'",
            "aiohttp <Success: 6 words, the longest 'aiohttp'>",
            "httpx   <Success: 6 words, the longest 'aiohttp'>",
            "stall   <Failure: TimedOut(",
            "429s retried after the server's Retry-After of 0.1s: True (3 prompts)",
        ),
        matches(r"requests in flight at the stub, at most: [12] \(limiter of 2\)"),
    ),
    "error_recovery": both(
        matches(
            rf"^AAPL: buy \(from the primary analysis, confidence 0\.90\)  {TIME}",
            rf"^AMZN: sell \(from the value analysis, confidence 0\.65\)  {TIME}",
            rf"^TSLA: buy \(from the value analysis, confidence 0\.66\)  {TIME}",
            rf"^NFLX: no recommendation, UnknownSymbol\(symbol='NFLX'\)  {TIME}",
        ),
        contains(
            "primary failed: FeedDown(symbol='AMZN', status=503)",
            "primary failed: TimedOut(",
            "fetch_quote failed: UnknownSymbol(symbol='NFLX')",
            "operator style gives the same results: True",
        ),
    ),
}


def _count(out: str, needle: str, n: int) -> None:
    assert out.count(needle) == n, out


@pytest.fixture(scope="module")
def outputs() -> dict[str, subprocess.CompletedProcess[str]]:
    """Run every example at once; their outputs by name."""
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", f"examples.{name}"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in EXAMPLES
    }
    done = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=180)
        done[name] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    return done


def test_every_example_is_listed() -> None:
    programs = {p.stem for p in (ROOT / "examples").glob("*.py")} - NOT_PROGRAMS
    missing = sorted(programs - set(EXAMPLES))
    assert not missing, f"add these examples to EXAMPLES in tests/test_examples.py: {missing}"
    gone = sorted(set(EXAMPLES) - programs)
    assert not gone, f"listed but not in examples/: {gone}"


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_runs_and_prints_its_results(name: str, outputs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    proc = outputs[name]
    assert proc.returncode == 0, f"examples.{name} exited with {proc.returncode}:\n{proc.stderr}"
    EXAMPLES[name](proc.stdout)
