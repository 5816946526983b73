"""The command line, run in a subprocess: success, failure, bad targets, bad input."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from combinators import Recorder, combine, run
from combinators._cli import _Progress, input_type, main
from cli_agents import Order, batch, fan, place

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "combinators", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_success_prints_the_value_as_json() -> None:
    proc = cli("run", "tests.cli_agents:place", "--input", '{"symbol": "AAPL", "qty": 10}')
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"symbol": "AAPL", "cost": 15.0}


def test_failure_exits_non_zero_with_the_error() -> None:
    proc = cli("run", "tests.cli_agents:place", "--input", '{"symbol": "AAPL", "qty": 1000}')
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert 'error: place failed with Refused: {"reason": "1000 is too many"}' in proc.stderr


def test_an_exception_in_an_agent_exits_3_with_the_traceback() -> None:
    proc = cli("run", "tests.cli_agents:broken", "--input", "7")
    assert proc.returncode == 3
    assert "RuntimeError: cannot handle 7" in proc.stderr
    assert "Traceback" in proc.stderr and "combinators: raised in node 'broken'" in proc.stderr


def test_bad_module_attr() -> None:
    cases = {
        "tests.cli_agents": "expected MODULE:ATTR",
        "tests.no_such_module:x": "cannot import module 'tests.no_such_module'",
        "tests.cli_agents:nope": "module 'tests.cli_agents' has no attribute 'nope'",
        "tests.cli_agents:not_an_agent": "tests.cli_agents:not_an_agent is a int, not an Agent",
        "tests.cli_agents:plain_function": "wrap a function with agent(), lift() or pure()",
    }
    for target, message in cases.items():
        proc = cli("run", target, "--input", "1")
        assert proc.returncode == 2, (target, proc.stderr)
        assert message in proc.stderr, (target, proc.stderr)
        assert "Traceback" not in proc.stderr


def test_input_that_does_not_fit_names_the_field() -> None:
    proc = cli("run", "tests.cli_agents:place", "--input", '{"symbol": "AAPL", "qty": "ten"}')
    assert proc.returncode == 2
    assert "error: input does not fit Order: $.qty: expected int, got str 'ten'" in proc.stderr
    proc = cli("run", "tests.cli_agents:place", "--input", '{"qty": 1}')
    assert "$.symbol: required field missing" in proc.stderr
    proc = cli("run", "tests.cli_agents:double", "--input", "{not json")
    assert proc.returncode == 2 and "--input is not valid JSON" in proc.stderr


def test_trace_report_and_mermaid(tmp_path: Path) -> None:
    trace = tmp_path / "run.json"
    proc = cli("run", "tests.cli_agents:fan", "--input", "1", "--trace", str(trace), "--report", "--mermaid")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [4, 4]
    events = json.loads(trace.read_text())["traceEvents"]
    assert {e["args"]["path"] for e in events if e["ph"] == "X"} == {
        "fan",
        "fan/double",
        "fan/par",
        "fan/par/double",
        "fan/par/again",
    }
    assert "flowchart LR" in proc.stderr and 'subgraph s1["fan"]' in proc.stderr
    assert "critical path: fan/double" in proc.stderr


def test_mermaid_command_and_each_input() -> None:
    proc = cli("mermaid", "tests.cli_agents:fan")
    assert proc.returncode == 0 and proc.stdout.startswith("flowchart LR\n")
    proc = cli("run", "tests.cli_agents:batch", "--input", "[1, 2, 3]", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [2, 4, 6]


def test_the_example_pipeline_runs_from_the_command_line() -> None:
    proc = cli("run", "examples.pipeline:pipeline", "--input", '"MSFT"')
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["symbol"] == "MSFT" and out["signal"] in ("buy", "sell")


def test_input_type_comes_from_the_leftmost_leaf() -> None:
    assert input_type(place) is Order
    assert input_type(fan) is int
    assert input_type(batch) == list[int]
    assert input_type(place.named("x").timeout(1)) is Order


def test_in_process_main_with_explicit_input_type() -> None:
    out, err = io.StringIO(), io.StringIO()
    code = main(
        ["run", "cli_agents:place", "--input", '{"symbol": "A", "qty": 2}', "--input-type", "cli_agents:Order"],
        stdout=out,
        stderr=err,
    )
    assert code == 0, err.getvalue()
    assert json.loads(out.getvalue()) == {"symbol": "A", "cost": 3.0}


async def test_progress_display_follows_the_leaves() -> None:
    stream = io.StringIO()
    progress = _Progress(fan, stream)
    rec = Recorder()
    with progress:
        result: Any = await run(fan, 1, observer=combine(rec, progress))
    assert result.unwrap() == (4, 4)
    assert progress._done == 3 and progress._total == 3
    assert not progress._running


def test_the_observe_example_runs_as_a_script(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "examples/observe_run.py", "GOOGL", str(tmp_path / "t.json")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "critical path: analyze/retry/fetch_quote > analyze/analyses/par/quality" in proc.stdout


def test_journal_makes_the_same_command_resume(tmp_path: Path) -> None:
    import os

    counter = tmp_path / "count.txt"
    env = {**os.environ, "COMBINATORS_CLI_COUNTER": str(counter)}
    args = [
        sys.executable, "-m", "combinators", "run", "tests.cli_agents:counted", "--input", "4",
        "--journal", f"sqlite:{tmp_path / 'runs.db'}", "--run-id", "r1", "--no-progress",
    ]
    for _ in range(2):
        proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout) == 12
    assert counter.read_text().splitlines() == ["4"]  # the second run replayed it
    missing = cli("run", "tests.cli_agents:counted", "--input", "4", "--journal", "memory:")
    assert missing.returncode == 2
    assert "--run-id" in missing.stderr
