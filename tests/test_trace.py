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

from combinators import Backoff, EventKind, Recorder, agent, combine, run, trace_events, write_trace
from combinators.otel import OtelObserver
from observe_trees import Spec, trees
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
    return xs


@settings(max_examples=150, deadline=None)
@given(trees)
def test_trace_of_a_generated_tree_validates_and_nests_like_the_tree(spec: Spec) -> None:
    _, events, _, _, _ = run_recorded(spec)
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
    assert len(by_path["p/retry/flaky"]) == 2
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
    failed = [s for s in by_path["p/retry/flaky"] if s.status.status_code is StatusCode.ERROR]
    assert len(failed) == 1
    assert [e.name for e in by_path["p/retry"][0].events] == ["retried"]


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
