"""The run report: per-node status, attempts and times, the critical path, the table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from returns.result import Failure, Result, Success

from combinators import (
    Agent,
    Backoff,
    NodeStatus,
    Recorder,
    RunReport,
    agent,
    build_report,
    collect,
    run,
)
from combinators.testing import fake, run_virtual
from observe_trees import trees
from test_observe import run_recorded


def _has_retry(tree: Agent[Any, Any, Any]) -> bool:
    return any(node.kind == "retry" for node in tree.walk())


@settings(max_examples=150, deadline=None)
@given(trees)
def test_report_times_are_the_clock_times(tree: Agent[Any, Any, Any]) -> None:
    result, events, clocks, t0, t1 = run_recorded(tree)
    report = build_report(events)
    root = report["root"]
    assert (root.start, root.end) == (t0, t1)
    assert report.duration == t1 - t0
    assert root.status is (NodeStatus.SUCCEEDED if isinstance(result, Success) else root.status)
    if isinstance(result, Failure):
        assert root.status in (NodeStatus.FAILED, NodeStatus.TIMED_OUT)
    for node in report.nodes:
        name = node.path.rsplit("/", 1)[-1]
        runs = clocks.runs.get(name)
        if node.kind == "leaf":
            assert runs is not None
            assert node.attempts == len(runs)
            assert node.start == runs[0][0]
            assert node.end == runs[-1][1]
            assert node.duration == runs[-1][1] - runs[0][0]
        assert node.end is not None and node.status is not NodeStatus.RUNNING
        assert (node.error is None) == (node.status in (NodeStatus.SUCCEEDED, NodeStatus.CANCELLED))


@settings(max_examples=150, deadline=None)
@given(trees)
def test_critical_path_is_ordered_and_adds_up(tree: Agent[Any, Any, Any]) -> None:
    _, events, _, t0, t1 = run_recorded(tree)
    report = build_report(events)
    path = [report[p] for p in report.critical_path]
    assert path
    for a, b in zip(path, path[1:], strict=False):
        assert a.end is not None and b.start >= a.end
    if not _has_retry(tree):
        # Without backoff waits, time is always spent in some node.
        assert sum(n.duration or 0.0 for n in path) == t1 - t0


def test_a_failing_operand_is_on_the_critical_path_not_the_sibling_it_cancelled() -> None:
    for tree in (
        (fake("a", delay=3, value=1) | fake("z", delay=2, error="bad")).named("g"),
        (fake("z", delay=2, error="bad") | fake("a", delay=3, value=1)).named("g"),
        (fake("a", delay=3, value=1) | fake("z", delay=2, error="bad") | fake("b", delay=4, value=1)).named("g"),
    ):
        rec = Recorder()
        assert run_virtual(tree, 0, observer=rec) == (Failure("bad"), 2.0)
        report = build_report(rec.events)
        assert report["g/a"].status is NodeStatus.CANCELLED and report["g/a"].end == 2
        assert report.critical_path == ("g/z",)
    # Names that sort the other way round: the outcome decides, not the name.
    rec = Recorder()
    run_virtual((fake("z", delay=3, value=1) | fake("a", delay=2, error="bad")).named("g"), 0, observer=rec)
    assert build_report(rec.events).critical_path == ("g/a",)


def test_on_a_tie_a_succeeded_parent_prefers_a_succeeded_child() -> None:
    # ``collect`` succeeds whatever its operands do: the operand that
    # succeeded at the same instant as a failing one is on the path.
    for tree in (
        collect(fake("a", delay=2, value=1) | fake("z", delay=2, error="e")).named("c"),
        collect(fake("z", delay=2, error="e") | fake("a", delay=2, value=1)).named("c"),
    ):
        rec = Recorder()
        run_virtual(tree, 0, observer=rec)
        report = build_report(rec.events)
        assert report["c"].status is NodeStatus.SUCCEEDED
        assert [report[p].path.rsplit("/", 1)[-1] for p in report.critical_path] == ["a"], report.table()


@settings(max_examples=150, deadline=None)
@given(trees)
def test_the_critical_path_avoids_siblings_cancelled_by_a_failure(tree: Agent[Any, Any, Any]) -> None:
    _, events, _, _, _ = run_recorded(tree)
    report = build_report(events)
    by_parent: dict[str, list[Any]] = {}
    for n in report.nodes[1:]:
        by_parent.setdefault(n.path.rsplit("/", 1)[0], []).append(n)
    failing = (NodeStatus.FAILED, NodeStatus.TIMED_OUT)
    for parent in report.nodes:
        if parent.status not in failing:
            continue
        kids = by_parent.get(parent.path, [])
        for kid in kids:
            tie = any(k.status in failing and k.end == kid.end for k in kids)
            if kid.status is NodeStatus.CANCELLED and tie:
                assert not any(p == kid.path or p.startswith(kid.path + "/") for p in report.critical_path), (
                    kid.path,
                    report.critical_path,
                )


async def test_critical_path_of_a_small_pipeline(autojump_clock: trio.testing.MockClock) -> None:
    def sleeper(name: str, seconds: float) -> Any:
        async def step(x: int) -> Result[int, str]:
            await trio.sleep(seconds)
            return Success(x)

        return agent(step).named(name)

    tree = (sleeper("fetch", 1) >> (sleeper("fast", 2) | sleeper("slow", 3)).transform(sum) >> sleeper("save", 1)).named("p")
    rec = Recorder()
    await run(tree, 1, observer=rec)
    report = build_report(rec.events)
    assert report.critical_path == ("p/fetch", "p/par/slow", "p/save")
    assert report.duration == 5
    assert [n.path for n in report.nodes] == ["p", "p/fetch", "p/par", "p/par/fast", "p/par/slow", "p/save"]
    table = report.table()
    lines = table.splitlines()
    assert lines[0].split() == ["node", "kind", "status", "tries", "start", "end", "took", "error"]
    assert any(line.startswith("*     slow") and "3.000" in line for line in lines), table
    assert lines[-1] == "total 5.000s; * critical path: p/fetch > p/par/slow > p/save"


async def test_report_counts_attempts_and_keeps_the_last_error(autojump_clock: trio.testing.MockClock) -> None:
    calls = 0

    @agent
    async def flaky(x: int) -> Result[int, str]:
        nonlocal calls
        calls += 1
        await trio.sleep(1)
        return Failure(f"attempt {calls} failed")

    rec = Recorder()
    tree = flaky.retry(2, backoff=Backoff(base=1, factor=1)).named("r")
    assert await run(tree, 1, observer=rec) == Failure("attempt 3 failed")
    report = build_report(rec.events)
    assert report["r/flaky"].attempts == 3
    assert report["r"].retries == 2
    assert report["r"].attempts == 1
    assert report["r/flaky"].error == repr("attempt 3 failed")
    assert report["r/flaky"].status is NodeStatus.FAILED
    assert (report["r"].start, report["r"].end) == (0, 5)
    assert "attempt 3 failed" in report.table()


def test_report_of_no_events_is_empty() -> None:
    report = build_report([])
    assert report == RunReport((), ())
    assert report.duration is None
    assert report.table().splitlines()[0].startswith("node")


def test_a_node_still_running_has_no_end() -> None:
    from combinators import Event, EventKind

    events = [Event(EventKind.STARTED, "p", 0.0, "seq"), Event(EventKind.STARTED, "p/a", 1.0, "leaf")]
    report = build_report(events)
    assert report["p/a"].status is NodeStatus.RUNNING
    assert report["p/a"].end is None and report["p/a"].duration is None
    assert report.critical_path == ("p",)


def test_unknown_path_is_a_key_error() -> None:
    with pytest.raises(KeyError, match="no node with path 'x'"):
        build_report([])["x"]





def test_the_observe_example_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from examples.observe_run import main

    trace_file = tmp_path / "trace.json"
    report = main("MSFT", trace_file)
    out = capsys.readouterr().out
    assert report.duration == pytest.approx(0.17)
    assert report.critical_path == ("analyze/fetch_quote.retry/fetch_quote", "analyze/analyses/par/quality")
    assert "flowchart LR" in out and '"success"' in out
    assert json.loads(trace_file.read_text())["traceEvents"]
