"""Chrome/Perfetto trace JSON and OpenTelemetry spans."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import trio
import trio.testing
from hypothesis import given, settings
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from returns.result import Failure, Result, Success

from combinators import Agent, Backoff, Event, EventKind, Recorder, agent, combine, pure, run, trace_events, write_trace
from combinators.otel import OtelObserver
from combinators.testing import agent_trees, fake, run_virtual
from observe_trees import trees
from test_observe import run_recorded


def _ancestor(a: str, b: str) -> bool:
    return b.startswith(a + "/")


def validate(trace: dict[str, Any]) -> list[dict[str, Any]]:
    """Check the trace-event JSON; returns its complete (X) events."""
    json.loads(json.dumps(trace))  # plain JSON
    assert set(trace) >= {"traceEvents"}
    xs: list[dict[str, Any]] = []
    for ev in trace["traceEvents"]:
        assert ev["ph"] in ("X", "i", "M"), ev
        assert isinstance(ev["pid"], int) and isinstance(ev["tid"], int)
        assert isinstance(ev["name"], str) and ev["name"]
        if ev["ph"] == "M":
            assert ev["name"] in ("process_name", "thread_name") and isinstance(ev["args"]["name"], str)
            continue
        assert isinstance(ev["ts"], int | float) and ev["ts"] >= 0
        if ev["ph"] == "X":
            assert isinstance(ev["dur"], int | float) and ev["dur"] >= 0
            assert isinstance(ev["args"]["path"], str)
            xs.append(ev)
        else:
            assert ev["s"] in ("g", "p", "t")
    # On each lane, two events are either disjoint in time or one encloses the
    # other, and then the outer one is an ancestor of the inner in the tree.
    by_tid: dict[int, list[dict[str, Any]]] = {}
    for ev in xs:
        by_tid.setdefault(ev["tid"], []).append(ev)
    for lane in by_tid.values():
        for i, a in enumerate(lane):
            for b in lane[i + 1 :]:
                a0, a1 = a["ts"], a["ts"] + a["dur"]
                b0, b1 = b["ts"], b["ts"] + b["dur"]
                if a1 <= b0 or b1 <= a0:
                    continue
                pa, pb = a["args"]["path"], b["args"]["path"]
                if a0 <= b0 and b1 <= a1 and _ancestor(pa, pb):
                    continue
                if b0 <= a0 and a1 <= b1 and _ancestor(pb, pa):
                    continue
                raise AssertionError(f"bad nesting on lane {a['tid']}: {a} / {b}")
        check_viewer_nesting(lane)
    return xs


def check_viewer_nesting(lane: list[dict[str, Any]]) -> None:
    """Nest one lane's events as Perfetto does, and check every enclosing
    event is a tree ancestor.

    The viewer sorts by start, longest first on equal starts (then file
    order), and puts each event inside the latest event still open: one
    that has not ended by the new event's start.  Unlike the pairwise check
    above, this sees a zero-length event drawn inside a longer sibling that
    starts at the same instant.
    """
    order = sorted(range(len(lane)), key=lambda i: (lane[i]["ts"], -lane[i]["dur"], i))
    stack: list[dict[str, Any]] = []
    for i in order:
        ev = lane[i]
        while stack and stack[-1]["ts"] + stack[-1]["dur"] <= ev["ts"]:
            stack.pop()
        if stack:
            outer = stack[-1]["args"]["path"]
            assert _ancestor(outer, ev["args"]["path"]), f"viewer draws {ev} inside {stack[-1]}"
        stack.append(ev)


@settings(max_examples=150, deadline=None)
@given(trees)
def test_trace_of_a_generated_tree_validates_and_nests_like_the_tree(tree: Agent[Any, Any, Any]) -> None:
    _, events, _, _, _ = run_recorded(tree)
    trace = trace_events(events)
    xs = validate(trace)
    # One complete event per node run, with the run's times in microseconds.
    starts = [e for e in events if e.kind is EventKind.STARTED]
    assert Counter(x["args"]["path"] for x in xs) == Counter(e.path for e in starts)
    assert sorted((x["args"]["path"], x["ts"]) for x in xs) == sorted((e.path, round(e.time * 1e6, 3)) for e in starts)
    # Each node run lies within a run of its parent (nearest ancestor with events).
    runs: dict[str, list[dict[str, Any]]] = {}
    for x in xs:
        runs.setdefault(x["args"]["path"], []).append(x)
    for x in xs:
        path = x["args"]["path"]
        parent = path.rsplit("/", 1)[0] if "/" in path else None
        while parent is not None and parent not in runs:
            parent = parent.rsplit("/", 1)[0] if "/" in parent else None
        if parent is not None:
            assert any(
                p["ts"] <= x["ts"] and x["ts"] + x["dur"] <= p["ts"] + p["dur"] + 1e-6 for p in runs[parent]
            ), (x, runs[parent])
    retried = [e for e in events if e.kind is EventKind.RETRIED]
    assert len([ev for ev in trace["traceEvents"] if ev["ph"] == "i"]) == len(retried)


def magnitude(x: int) -> int:
    return abs(x)


def test_a_zero_length_step_is_not_drawn_inside_its_sibling() -> None:
    tree = (pure(magnitude).named("quick") >> fake("slow", delay=1)).named("p")
    rec = Recorder()
    run_virtual(tree, -1, observer=rec)
    xs = {x["args"]["path"]: x for x in validate(trace_events(rec.events))}
    assert (xs["p/quick"]["ts"], xs["p/quick"]["dur"]) == (0, 0)
    assert (xs["p/slow"]["ts"], xs["p/slow"]["dur"]) == (0, 1e6)
    assert xs["p/quick"]["tid"] != xs["p/slow"]["tid"]
    # A zero-length step *after* a slow one ends as it starts: one lane is fine.
    rec = Recorder()
    run_virtual((fake("slow", delay=1, value=-1) >> pure(magnitude).named("quick")).named("p"), -1, observer=rec)
    xs = {x["args"]["path"]: x for x in validate(trace_events(rec.events))}
    assert len({x["tid"] for x in xs.values()}) == 1
    # Many zero-length steps in a row share a lane (they never enclose each other).
    rec = Recorder()
    run_virtual((pure(magnitude) >> pure(magnitude) >> pure(magnitude)).named("p"), -1, observer=rec)
    xs = {x["args"]["path"]: x for x in validate(trace_events(rec.events))}
    assert len({x["tid"] for x in xs.values()}) == 1


def test_a_free_lane_holding_a_zero_length_event_is_not_reused_at_that_instant() -> None:
    # Started in the order a, b, c: b (zero-length) opens lane 1 beside a;
    # lane 1 is free again at once, but c (longer, same start) would be
    # drawn around b there.
    started = EventKind.STARTED
    done = EventKind.SUCCEEDED
    events = [
        Event(started, "p", 0.0, "par"),
        Event(started, "p/a", 0.0, "leaf"),
        Event(started, "p/b", 0.0, "leaf"),
        Event(done, "p/b", 0.0, "leaf"),
        Event(started, "p/c", 0.0, "leaf"),
        Event(done, "p/a", 1.0, "leaf"),
        Event(done, "p/c", 1.0, "leaf"),
        Event(done, "p", 1.0, "par"),
        Event(started, "q", 2.0, "leaf"),
        Event(done, "q", 3.0, "leaf"),
    ]
    xs = {x["args"]["path"]: x for x in validate(trace_events(events))}
    assert len({xs[p]["tid"] for p in ("p/a", "p/b", "p/c")}) == 3
    assert xs["q"]["tid"] in {xs[p]["tid"] for p in ("p/a", "p/b", "p/c")}  # free lanes are reused later


@settings(max_examples=200, deadline=None)
@given(agent_trees(max_leaves=8))
def test_trace_of_fake_trees_with_zero_delays_nests_like_the_tree(tree: Agent[Any, Any, Any]) -> None:
    rec = Recorder()
    run_virtual(tree.named("root"), 0, observer=rec)
    xs = validate(trace_events(rec.events))
    assert len(xs) == sum(1 for e in rec.events if e.kind is EventKind.STARTED)


async def test_parallel_branches_get_their_own_lanes(autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    def sleeper(name: str, seconds: float) -> Any:
        async def step(x: int) -> Result[int, str]:
            await trio.sleep(seconds)
            return Success(x)

        return agent(step).named(name)

    tree = (sleeper("a", 1) >> (sleeper("b", 2) | sleeper("c", 3) | sleeper("d", 1))).named("p")
    rec = Recorder()
    await run(tree, 1, observer=rec)
    file = tmp_path / "trace.json"
    write_trace(rec.events, file)
    trace = json.loads(file.read_text())
    xs = {x["args"]["path"]: x for x in validate(trace)}
    assert xs["p"]["tid"] == xs["p/a"]["tid"] == xs["p/par"]["tid"]
    lanes = {xs[f"p/par/{n}"]["tid"] for n in "bcd"}
    assert len(lanes) == 3
    assert (xs["p/par/c"]["ts"], xs["p/par/c"]["dur"]) == (1e6, 3e6)
    assert xs["p/par/c"]["cat"] == "leaf" and xs["p/par/c"]["args"]["status"] == "succeeded"


async def test_otel_spans_nest_like_the_tree(autojump_clock: trio.testing.MockClock) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    calls = 0

    @agent
    async def flaky(x: int) -> Result[int, str]:
        nonlocal calls
        calls += 1
        await trio.sleep(1)
        return Success(x) if calls > 1 else Failure("once")

    @agent
    async def slow(x: int) -> Result[int, str]:
        await trio.sleep(3)
        return Success(x)

    tree = (flaky.retry(1, backoff=Backoff(base=1)) >> (slow | slow.named("other"))).named("p")
    rec = Recorder()
    observer = combine(rec, OtelObserver(provider.get_tracer("test")))
    assert await run(tree, 5, observer=observer) == Success((5, 5))
    spans = exporter.get_finished_spans()
    by_path: dict[str, list[Any]] = {}
    for s in spans:
        assert s.attributes is not None
        by_path.setdefault(str(s.attributes["combinators.path"]), []).append(s)
    assert sorted(by_path) == sorted({e.path for e in rec.events})
    assert len(by_path["p/flaky.retry/flaky"]) == 2
    root = by_path["p"][0]
    assert root.parent is None
    for path, group in by_path.items():
        if path == "p":
            continue
        parent_path = path.rsplit("/", 1)[0]
        for s in group:
            assert s.parent is not None
            assert s.parent.span_id == by_path[parent_path][0].context.span_id
            assert s.context.trace_id == root.context.trace_id
    assert root.end_time is not None and root.start_time is not None
    assert root.end_time - root.start_time == 6 * 10**9  # 1 + 1 backoff + 1 + 3 virtual seconds
    failed = [s for s in by_path["p/flaky.retry/flaky"] if s.status.status_code is StatusCode.ERROR]
    assert len(failed) == 1
    assert [e.name for e in by_path["p/flaky.retry"][0].events] == ["retried"]


async def test_lanes_are_reused_once_free(autojump_clock: trio.testing.MockClock) -> None:
    @agent
    async def tick(x: int) -> Result[int, str]:
        await trio.sleep(1)
        return Success(x)

    def group() -> Any:
        return (tick | tick | tick).transform(lambda t: t[0])

    tree = (group() >> group() >> group()).named("p")
    rec = Recorder()
    await run(tree, 1, observer=rec)
    xs = validate(trace_events(rec.events))
    assert len({x["tid"] for x in xs}) == 3


def test_one_otel_observer_serves_runs_with_different_clocks() -> None:
    """Each run is placed on the wall clock at its own start, although trio's
    clock starts afresh (at a random origin) in every ``trio.run``."""
    import time

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    observer = OtelObserver(provider.get_tracer("test"))
    tree = (fake("a", delay=2, value=1) >> fake("b", delay=1, value=2)).named("p")

    for origin in (0.0, 5 * 3600.0, 17.25):  # trio clock readings at each run's start

        async def main(origin: float = origin) -> None:
            clock = trio.lowlevel.current_clock()
            assert isinstance(clock, trio.testing.MockClock)
            clock.jump(origin)
            await run(tree, 0, observer=observer)

        before = time.time_ns()
        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
        after = time.time_ns()
        spans = {str(s.attributes["combinators.path"]): s for s in exporter.get_finished_spans() if s.attributes}
        exporter.clear()
        root, a, b = spans["p"], spans["p/a"], spans["p/b"]
        assert root.start_time is not None and root.end_time is not None
        assert before <= root.start_time <= after  # on the wall clock now, not hours off
        assert root.end_time - root.start_time == 3 * 10**9
        assert (a.start_time, a.end_time) == (root.start_time, root.start_time + 2 * 10**9)
        assert (b.start_time, b.end_time) == (root.start_time + 2 * 10**9, root.end_time)
        assert a.parent is not None and a.parent.span_id == root.context.span_id


async def test_one_otel_observer_serves_concurrent_runs(autojump_clock: trio.testing.MockClock) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    observer = OtelObserver(provider.get_tracer("test"))

    async def later() -> None:
        await trio.sleep(10)
        await run(fake("y", delay=1, value=1).named("y"), 0, observer=observer)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(later)
        await run(fake("x", delay=20, value=1).named("x"), 0, observer=observer)
    spans = {s.name: s for s in exporter.get_finished_spans()}
    x, y = spans["x"], spans["y"]
    assert x.start_time is not None and x.end_time is not None and y.start_time is not None
    assert x.end_time - x.start_time == 20 * 10**9
    assert y.end_time is not None and y.end_time - y.start_time == 10**9
