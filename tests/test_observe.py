"""Events: every node run starts once and ends once; retries are counted."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from returns.result import Failure, Result, Success

from combinators import (
    Agent,
    Backoff,
    Event,
    EventKind,
    Recorder,
    agent,
    combine,
    fail,
    pure,
    run,
    succeed,
)
from combinators._observe import TERMINAL, emit
from combinators._run import compile_tree
from observe_trees import Clocks, recording, trees


def run_recorded(tree: Agent[Any, Any, Any]) -> tuple[Result[Any, Any], list[Event], Clocks, float, float]:
    """Run ``tree`` under a MockClock; events, leaf clocks, start and end."""
    clocks = Clocks()
    rec = Recorder()
    times: list[float] = []

    async def main() -> Result[Any, Any]:
        times.append(trio.current_time())
        result = await run(tree, 0, observer=rec)
        times.append(trio.current_time())
        return result

    with recording(clocks):
        result = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return result, rec.events, clocks, times[0], times[1]


def check_started_then_one_terminal(events: list[Event]) -> dict[str, list[Event]]:
    by_path: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        if e.kind is not EventKind.RETRIED:
            by_path[e.path].append(e)
    for path, evs in by_path.items():
        kinds = [e.kind for e in evs]
        assert kinds[0::2] == [EventKind.STARTED] * len(kinds[0::2]), (path, kinds)
        assert all(k in TERMINAL for k in kinds[1::2]), (path, kinds)
        assert len(kinds) % 2 == 0, (path, kinds)
        times = [e.time for e in evs]
        assert times == sorted(times), (path, times)
    return by_path


@settings(max_examples=150, deadline=None)
@given(trees)
def test_every_start_has_exactly_one_terminal_event(tree: Agent[Any, Any, Any]) -> None:
    result, events, _, t0, t1 = run_recorded(tree)
    by_path = check_started_then_one_terminal(events)
    root = by_path["root"]
    assert [e.kind for e in root] == [
        EventKind.STARTED,
        EventKind.SUCCEEDED if isinstance(result, Success) else EventKind.FAILED,
    ] or (root[-1].kind is EventKind.TIMED_OUT and isinstance(result, Failure))
    assert root[0].time == t0 and root[-1].time == t1


@settings(max_examples=150, deadline=None)
@given(trees)
def test_retried_events_match_attempts(tree: Agent[Any, Any, Any]) -> None:
    _, events, _, _, _ = run_recorded(tree)
    starts: dict[str, int] = defaultdict(int)
    retried: dict[str, list[int]] = defaultdict(list)
    retry_paths = set()
    for e in events:
        if e.kind is EventKind.STARTED:
            starts[e.path] += 1
            if e.node == "retry":
                retry_paths.add(e.path)
        elif e.kind is EventKind.RETRIED:
            retried[e.path].append(e.attempt)
    for path in retry_paths:
        (child,) = [p for p in starts if p.startswith(path + "/") and "/" not in p[len(path) + 1 :]]
        # Each run of the retry node runs its child once, plus once per retry.
        assert starts[child] == starts[path] + len(retried[path]), (path, child)
        # Attempt numbers count up from 2 within each run of the retry node.
        attempts = retried[path]
        for i, a in enumerate(attempts):
            assert a == 2 or (i > 0 and a == attempts[i - 1] + 1)
        # The child's runs carry their attempt: 1, 2, ... within each run of the retry node.
        child_attempts = [e.attempt for e in events if e.path == child and e.kind is EventKind.STARTED]
        assert child_attempts.count(1) == starts[path]
        assert sorted(a for a in child_attempts if a > 1) == sorted(attempts)
        for i, a in enumerate(child_attempts):
            assert a == 1 or child_attempts[i - 1] == a - 1
    assert set(retried) <= retry_paths
    # A terminal event carries the attempt of its start.
    open_: dict[str, int] = {}
    for e in events:
        if e.kind is EventKind.STARTED:
            open_[e.path] = e.attempt
        elif e.kind in TERMINAL:
            assert open_.pop(e.path) == e.attempt


@settings(max_examples=100, deadline=None)
@given(trees)
def test_leaf_event_times_are_the_clock_times(tree: Agent[Any, Any, Any]) -> None:
    _, events, clocks, _, _ = run_recorded(tree)
    seen: dict[str, list[tuple[float, float]]] = defaultdict(list)
    open_: dict[str, float] = {}
    for e in events:
        if e.node != "leaf":
            continue
        name = e.path.rsplit("/", 1)[-1]
        if e.kind is EventKind.STARTED:
            open_[name] = e.time
        elif e.kind in TERMINAL:
            seen[name].append((open_.pop(name), e.time))
    assert dict(seen) == clocks.runs


async def test_timeout_emits_timed_out_and_cancels_inside(autojump_clock: trio.testing.MockClock) -> None:
    @agent
    async def slow(x: int) -> Result[int, str]:
        await trio.sleep(5)
        return Success(x)

    rec = Recorder()
    result = await run(slow.timeout(1).named("t"), 1, observer=rec)
    assert isinstance(result, Failure)
    assert [(e.kind, e.path, e.time) for e in rec.events] == [
        (EventKind.STARTED, "t", 0.0),
        (EventKind.STARTED, "t/slow", 0.0),
        (EventKind.CANCELLED, "t/slow", 1.0),
        (EventKind.TIMED_OUT, "t", 1.0),
    ]
    assert rec.events[-1].error == result.failure()


async def test_retry_events_carry_attempt_and_error(autojump_clock: trio.testing.MockClock) -> None:
    calls = 0

    @agent
    async def flaky(x: int) -> Result[int, str]:
        nonlocal calls
        calls += 1
        await trio.sleep(1)
        return Success(x) if calls == 3 else Failure(f"try {calls}")

    rec = Recorder()
    tree = flaky.retry(3, backoff=Backoff(base=2, factor=1)).named("r")
    assert await run(tree, 7, observer=rec) == Success(7)
    retried = [(e.attempt, e.error, e.time) for e in rec.events if e.kind is EventKind.RETRIED]
    assert retried == [(2, "try 1", 3.0), (3, "try 2", 6.0)]
    starts = [(e.time, e.attempt) for e in rec.events if e.path == "r/flaky" and e.kind is EventKind.STARTED]
    assert starts == [(0, 1), (3, 2), (6, 3)]
    assert [e.attempt for e in rec.events if e.path == "r"] == [1, 2, 3, 1]


async def test_a_bug_is_a_failed_event_and_siblings_are_cancelled(autojump_clock: trio.testing.MockClock) -> None:
    def boom(x: int) -> int:
        raise ZeroDivisionError("no")

    @agent
    async def slow(x: int) -> Result[int, str]:
        await trio.sleep(5)
        return Success(x)

    rec = Recorder()
    with pytest.raises(ZeroDivisionError):
        await run((pure(boom) | slow).named("g"), 1, observer=rec)
    kinds = {(e.path, e.kind) for e in rec.events if e.kind is not EventKind.STARTED}
    assert ("g/boom", EventKind.FAILED) in kinds
    assert ("g/slow", EventKind.CANCELLED) in kinds
    failed = next(e for e in rec.events if e.path == "g/boom" and e.kind is EventKind.FAILED)
    assert isinstance(failed.error, ZeroDivisionError)


async def test_combined_observers_each_see_every_event() -> None:
    a, b = Recorder(), Recorder()
    tree = (succeed(1) >> pure(str)).named("p")
    await run(tree, None, observer=combine(a, b))
    assert a.events == b.events
    assert [e.path for e in a.events] == ["p", "p/succeed", "p/succeed", "p/str", "p/str", "p"]


async def test_failure_event_holds_the_error() -> None:
    rec = Recorder()
    result = await run(fail("nope").named("f"), 0, observer=rec)
    assert result == Failure("nope")
    assert [(e.kind, e.error) for e in rec.events] == [(EventKind.STARTED, None), (EventKind.FAILED, "nope")]


def test_no_observer_means_no_wrapping() -> None:
    def neg(x: int) -> int:
        return -x

    tree = pure(neg) >> pure(str)
    bare = compile_tree(tree)
    assert not getattr(bare, "_observed", False)
    assert compile_tree(tree) is bare  # one plan per tree, reused
    assert compile_tree(tree, observer=Recorder()) is not bare


def test_emit_without_observer_does_nothing() -> None:
    emit(EventKind.RETRIED, "x")  # no trio needed: nothing happens


@pytest.mark.parametrize("module", ["_observe", "_report", "_trace", "_mermaid", "_json", "otel"])
def test_doctests(module: str) -> None:
    import doctest
    import importlib

    failed, attempted = doctest.testmod(importlib.import_module(f"combinators.{module}"))
    assert failed == 0 and attempted > 0


async def test_chain_steps_report_in_order_with_times_and_values(autojump_clock: trio.testing.MockClock) -> None:
    """Every step of a chain, agent or pure, reports its start and outcome, in order."""
    from returns.result import Failure, Result, Success

    from combinators import EventKind, Recorder, agent, pure, run

    @agent
    async def slow(x: int) -> Result[int, str]:
        await trio.sleep(2)
        return Success(x + 1)

    @agent
    async def refuse(x: int) -> Result[int, str]:
        await trio.sleep(1)
        return Failure(f"no {x}")

    def double(x: int) -> int:
        return 2 * x

    recorder = Recorder()
    tree = (slow >> pure(double) >> slow >> refuse >> slow).named("chain")
    assert await run(tree, 1, observer=recorder) == Failure("no 5")
    seen = [(e.kind, e.path, e.time, e.value if e.kind is EventKind.SUCCEEDED else e.error) for e in recorder.events]
    t0 = seen[0][2]
    rel = [(k, p, t - t0, v) for k, p, t, v in seen]
    assert rel == [
        (EventKind.STARTED, "chain", 0, None),
        (EventKind.STARTED, "chain/slow[0]", 0, None),
        (EventKind.SUCCEEDED, "chain/slow[0]", 2, 2),
        (EventKind.STARTED, "chain/double", 2, None),
        (EventKind.SUCCEEDED, "chain/double", 2, 4),
        (EventKind.STARTED, "chain/slow[2]", 2, None),
        (EventKind.SUCCEEDED, "chain/slow[2]", 4, 5),
        (EventKind.STARTED, "chain/refuse", 4, None),
        (EventKind.FAILED, "chain/refuse", 5, "no 5"),
        (EventKind.FAILED, "chain", 5, "no 5"),
    ]


def _leaf_spans(events: list[Any]) -> dict[str, tuple[float, float]]:
    """(start, end) of every leaf, relative to the first event."""
    from combinators import EventKind

    t0 = events[0].time
    starts = {e.path: e.time - t0 for e in events if e.kind is EventKind.STARTED and e.node == "leaf"}
    ends = {e.path: e.time - t0 for e in events if e.kind in TERMINAL and e.node == "leaf"}
    return {p: (starts[p], ends[p]) for p in starts}


@pytest.mark.parametrize(
    "make",
    [
        lambda leaf: leaf,  # the fused observed leaf under the run's limiter
        lambda leaf: leaf.limit(1).limit(2),  # two limiters: the general leaf path
        lambda leaf: leaf.rate(1, per=2.0),  # a rate window: the general path again
    ],
    ids=["one limiter", "two limiters", "rate"],
)
def test_a_leaf_starts_when_it_is_admitted_not_when_it_queues(make: Any) -> None:
    """A leaf's ``started`` comes once it has its slot, so its span is its own run."""
    from combinators import Recorder
    from combinators.testing import fake, run_virtual

    a, b, c = (make(fake(n, delay=2, value=n)) for n in "abc")
    recorder = Recorder()
    result, elapsed = run_virtual((a | b | c).named("g"), 0, observer=recorder, max_concurrency=1)
    assert result == Success(("a", "b", "c")) and elapsed == 6
    spans = sorted(_leaf_spans(recorder.events).values())
    assert spans == [(0, 2), (2, 4), (4, 6)]


def test_a_leaf_cancelled_while_queued_never_started() -> None:
    from combinators import EventKind, Recorder
    from combinators.testing import fake, run_virtual

    bad = fake("bad", delay=1, error="no")
    a, b = fake("a", delay=5, value=1), fake("b", delay=5, value=2)
    recorder = Recorder()
    result, _ = run_virtual(bad | (a | b).limit(1), 0, observer=recorder)
    assert result == Failure("no")
    # One of a, b got the slot and was cancelled at 1 s; the other was still
    # waiting for it, so it never started and reports nothing.
    kinds = sorted(
        [e.kind for e in recorder.events if e.path.endswith(name)] for name in ("/a", "/b")
    )
    assert kinds == [[], [EventKind.STARTED, EventKind.CANCELLED]]


async def test_a_resumed_run_reports_replayed_leaves(tmp_path: Any) -> None:
    """Leaves answered from the journal did finish: they start and end at one instant."""
    from combinators import EventKind, Journal, Recorder, each, lift

    calls: list[int] = []

    def square(x: int) -> int:
        calls.append(x)
        return x * x

    journal = Journal.memory()
    tree = each(lift(square))
    await run(tree, [1, 2, 3], journal=journal, run_id="r")
    recorder = Recorder()
    assert await run(tree, [1, 2, 3], journal=journal, run_id="r", observer=recorder) == Success([1, 4, 9])
    assert sorted(calls) == [1, 2, 3]  # nothing ran twice
    leaves = [(e.kind, e.path, e.value) for e in recorder.events if e.node == "leaf"]
    assert sorted(leaves, key=lambda k: (k[1], k[0].value != "started")) == [
        (EventKind.STARTED, "each/square[0]", None),
        (EventKind.SUCCEEDED, "each/square[0]", 1),
        (EventKind.STARTED, "each/square[1]", None),
        (EventKind.SUCCEEDED, "each/square[1]", 4),
        (EventKind.STARTED, "each/square[2]", None),
        (EventKind.SUCCEEDED, "each/square[2]", 9),
    ]


def test_an_unobserved_run_inside_an_observed_one_reports_nothing() -> None:
    """The inner run has no observer: its retries must not reach the outer run's observer."""
    from combinators import Recorder, agent
    from combinators.testing import fake, run_virtual

    flaky = fake("flaky", delay=1, error="e").retry(2)

    async def call_inner(x: int) -> Result[int, str]:
        inner = await run(flaky.named("inner"), x)
        return Success(0) if isinstance(inner, Failure) else inner

    recorder = Recorder()
    run_virtual(agent(call_inner).named("outer"), 1, observer=recorder)
    assert {e.path for e in recorder.events} == {"outer"}


# -- the public progress display (issue 15) ---------------------------------------------------------


def _console() -> tuple[Any, Any]:
    import io

    from rich.console import Console

    out = io.StringIO()
    return out, Console(file=out, width=100, force_terminal=False)


async def test_progress_draws_a_fan_out_under_a_mock_clock(autojump_clock: trio.testing.MockClock) -> None:
    from combinators import Progress, each
    from combinators.testing import fake

    batch = each(fake("summarize", delay=1, value="ok")).named("batch")
    out, console = _console()
    progress = Progress(batch, total=5, console=console)
    assert await run(batch, list(range(5)), observer=progress) == Success(["ok"] * 5)
    # The root's end stopped the display, which drew its last state.
    assert (progress.started, progress.done, progress.failed, progress.running) == (5, 5, 0, 0)
    text = out.getvalue()
    assert "batch" in text and "5/5" in text
    assert "failed" not in text


async def test_progress_counts_failures_and_grows_its_total(autojump_clock: trio.testing.MockClock) -> None:
    from combinators import Progress, collect, each
    from combinators.testing import fake

    tree = collect(each(fake("call", delay=1, value=1))).named("all")
    out, console = _console()
    progress = Progress(tree, console=console)  # no total: one leaf drawn, three run
    assert await run(tree, [1, 2, 3], observer=progress) == Success([Success(1)] * 3)
    assert (progress.started, progress.done, progress.failed) == (3, 3, 0)
    assert "3/3" in out.getvalue()

    failing = collect(each(fake("call", error="no"))).named("all")
    out, console = _console()
    with Progress(failing, console=console) as progress:
        await run(failing, [1, 2], observer=progress)
    assert (progress.done, progress.failed) == (2, 2)
    assert "2 failed" in out.getvalue()


async def test_progress_as_a_context_manager_with_another_observer(autojump_clock: trio.testing.MockClock) -> None:
    from combinators import Progress
    from combinators.testing import fake

    tree = (fake("a", delay=1, value=1) | fake("b", delay=2, value=2)).named("pair")
    out, console = _console()
    recorder = Recorder()
    with Progress(tree, console=console, transient=False) as progress:
        assert await run(tree, 0, observer=combine(recorder, progress)) == Success((1, 2))
        assert await run(tree, 0, observer=combine(recorder, progress)) == Success((1, 2))
    assert (progress.started, progress.done) == (4, 4)
    assert "4/4" in out.getvalue()
    assert repr(progress) == "<Progress 'pair': 4/4 done, 0 failed>"


def test_progress_without_rich_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from combinators import Progress

    monkeypatch.setitem(sys.modules, "rich.console", None)
    with pytest.raises(ImportError, match=r"install the cli extra: pip install 'combinators\[cli\]'"):
        Progress(pure(abs))


def test_importing_combinators_does_not_import_rich() -> None:
    import subprocess
    import sys

    code = "import combinators, sys; from combinators import Progress; print(sorted(m for m in sys.modules if m.split('.')[0] == 'rich'))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert proc.stdout.strip() == "[]"


def test_progress_refuses_bad_arguments() -> None:
    from combinators import Progress

    with pytest.raises(TypeError, match="expects the Agent"):
        Progress(abs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="total must be an int >= 0"):
        Progress(pure(abs), total=-1)
