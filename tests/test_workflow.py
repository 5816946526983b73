"""Workflows: building, refusing, scheduling, failure policies, composition, scale.

Time is trio's virtual clock (``autojump_clock`` or a ``MockClock`` per
hypothesis example), so every start time and run time is checked exactly.
"""

from __future__ import annotations

import sys
from typing import Any, Literal

import attrs
import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from returns.result import Failure, Result, Success

from combinators import (
    Agent,
    BuildError,
    CycleError,
    Crashed,
    EventKind,
    Node,
    NodeCancelled,
    NodeFailed,
    NodeOutcome,
    NodeSkipped,
    NodeSucceeded,
    Recorder,
    TimedOut,
    Workflow,
    WorkflowFailed,
    WorkflowResult,
    agent,
    lift,
    pure,
    run,
    to_mermaid,
)
from combinators._plan import segments
from combinators.testing import agent_trees, run_virtual

# --------------------------------------------------------------------------
# Helpers


def sleeper(
    name: str, seconds: float, *, fails: bool = False, log: dict[str, float] | None = None
) -> Agent[object, str, str]:
    """A leaf that records its start time, sleeps, and succeeds with its name (or fails)."""

    async def fn(x: object) -> Result[str, str]:
        if log is not None:
            log[name] = trio.current_time()
        await trio.sleep(seconds)
        return Failure(f"{name} broke") if fails else Success(name)

    return agent(fn).named(name)


def ident(x: int) -> int:
    return x


def failed(result: Result[Any, Any]) -> WorkflowFailed[Any]:
    assert isinstance(result, Failure), result
    error = result.failure()
    assert isinstance(error, WorkflowFailed)
    return error


# --------------------------------------------------------------------------
# Building and data flow


async def test_inputs_follow_after() -> None:
    wf, size = Workflow.start(str).add("size", pure(len))
    wf, upper = wf.add("upper", pure(str.upper))
    wf, double = wf.add("double", pure(lambda n: n * 2), after=size)
    wf, pair = wf.add("pair", pure(lambda t: f"{t[0]}:{t[1]}"), after=(upper, double))
    wf, many = wf.add("many", pure(lambda t: sum(t)), after=[size, double, size])
    result = (await run(wf.build(), "abc")).unwrap()
    assert isinstance(result, WorkflowResult)
    assert result[size] == 3
    assert result[double] == 6
    assert result[pair] == "ABC:6"
    assert result[many] == 12
    assert result["upper"] == "ABC"
    assert list(result.names()) == ["size", "upper", "double", "pair", "many"]
    assert result.as_dict()["pair"] == "ABC:6"
    assert len(result) == 5 and "pair" in result and pair in result and "nope" not in result
    with pytest.raises(KeyError, match="nope"):
        result["nope"]


async def test_output_selects_one_node() -> None:
    wf, a = Workflow.start(int).add("a", pure(lambda x: x + 1))
    wf, b = wf.add("b", pure(lambda x: x * 10), after=a)
    assert await run(wf.build(output=b), 1) == Success(20)
    assert await run(wf.build(output=a), 1) == Success(2)


async def test_builder_is_immutable_and_branches() -> None:
    base, a = Workflow.start(int).add("a", pure(lambda x: x + 1))
    left, b = base.add("b", pure(lambda x: x * 2), after=a)
    # Branch from `base` again: its own "b" is allowed, left's is not visible.
    right, b2 = base.add("b", pure(lambda x: x * 3), after=a)
    right, c = right.add("c", pure(lambda x: x - 1), after=b2)
    assert len(base) == 1 and len(left) == 2 and len(right) == 3
    assert "b" not in base and "c" not in left and "c" in right
    assert (await run(left.build(), 1)).unwrap().as_dict() == {"a": 2, "b": 4}
    assert (await run(right.build(), 1)).unwrap().as_dict() == {"a": 2, "b": 6, "c": 5}
    # A handle from one branch is foreign to the other.
    with pytest.raises(BuildError, match="'c'.*does not belong"):
        left.add("d", pure(str), after=c)
    # And the older builder still grows independently.
    left2, _ = left.add("c", pure(str), after=b)
    assert (await run(left2.build(), 1)).unwrap().as_dict() == {"a": 2, "b": 4, "c": "4"}


async def test_depend_orders_without_data(autojump_clock: trio.testing.MockClock) -> None:
    log: dict[str, float] = {}
    wf = Workflow.start(int).depend("late", on="early")  # forward: neither exists yet
    wf, _ = wf.add("late", sleeper("late", 1, log=log))
    wf, early = wf.add("early", sleeper("early", 2, log=log))
    wf, other = wf.add("other", sleeper("other", 1, log=log))
    wf = wf.depend(other, on=[early, "late"])
    t0 = trio.current_time()
    result = (await run(wf.build(), 0)).unwrap()
    assert result.as_dict() == {"late": "late", "early": "early", "other": "other"}
    assert {k: v - t0 for k, v in log.items()} == {"early": 0, "late": 2, "other": 3}


async def test_empty_workflow() -> None:
    assert (await run(Workflow.start(int).build(), 1)).unwrap().as_dict() == {}


def test_repr_and_equality() -> None:
    def build() -> Agent[int, WorkflowResult, WorkflowFailed[Any]]:
        wf, a = Workflow.start(int).add("a", pure(abs))
        wf, _ = wf.add("b", pure(str), after=a)
        return wf.build()

    assert repr(build()) == "workflow(pure(abs).named('a'), pure(str).named('b'))"
    assert build() == build() and hash(build()) == hash(build())
    wf, h = Workflow.start(int).add("a", pure(abs))
    assert repr(wf) == "<Workflow of 1 nodes>" and repr(h) == "Node('a')"


# --------------------------------------------------------------------------
# Refused at build time


def test_refuses_bad_names() -> None:
    wf, _ = Workflow.start(int).add("a", pure(abs))
    with pytest.raises(BuildError, match="duplicate name.*'a'"):
        wf.add("a", pure(abs))
    with pytest.raises(BuildError, match="non-empty"):
        wf.add("", pure(abs))
    with pytest.raises(BuildError, match="'/'"):
        wf.add("x/y", pure(abs))
    with pytest.raises(BuildError, match="non-empty"):
        wf.depend("", on="a")


def test_refuses_bad_arguments() -> None:
    wf, a = Workflow.start(int).add("a", pure(abs))
    with pytest.raises(TypeError, match="must be an Agent.*wrap a function"):
        wf.add("b", abs)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="Node handle"):
        wf.add("b", pure(abs), after="a")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Node handles"):
        wf.add("b", pure(sum), after=[a, "a"])  # type: ignore[list-item]
    with pytest.raises(BuildError, match="on_failure"):
        wf.build(on_failure="stop")  # type: ignore[call-overload]
    with pytest.raises(TypeError, match=r"nest it with \.build\(\)"):
        wf.add("b", Workflow.start(int))  # type: ignore[call-overload]
    with pytest.raises(TypeError, match=r"call \.build\(\)"):
        wf >> pure(abs)  # type: ignore[operator]
    other, foreign = Workflow.start(int).add("z", pure(abs))
    with pytest.raises(BuildError, match="'z'.*does not belong"):
        wf.add("b", pure(ident), after=foreign)
    with pytest.raises(BuildError, match="'z'.*does not belong"):
        wf.build(output=foreign)
    with pytest.raises(BuildError, match="'z'.*does not belong"):
        wf.depend(foreign, on="a")


def test_refuses_unknown_dependency() -> None:
    wf, _ = Workflow.start(int).add("a", pure(abs))
    wf = wf.depend("a", on="ghost")
    with pytest.raises(BuildError, match=r"depend\('a', on='ghost'\).*unknown node 'ghost'"):
        wf.build()
    wf2 = Workflow.start(int).depend("ghost", on="a")
    wf2, _ = wf2.add("a", pure(abs))
    with pytest.raises(BuildError, match="unknown node 'ghost'"):
        wf2.build()


def test_refuses_cycles_naming_them_in_order() -> None:
    wf, a = Workflow.start(int).add("a", pure(abs))
    wf, b = wf.add("b", pure(ident), after=a)
    wf, c = wf.add("c", pure(ident), after=b)
    wf, _ = wf.add("d", pure(ident), after=c)
    with pytest.raises(CycleError, match="a -> b -> c -> a") as info:
        wf.depend(a, on=c).build()
    assert info.value.cycle == ("a", "b", "c", "a")
    with pytest.raises(CycleError, match="d -> d"):
        wf.depend("d", on="d").build()


# --------------------------------------------------------------------------
# Scheduling


async def test_node_starts_when_its_last_dependency_finishes(autojump_clock: trio.testing.MockClock) -> None:
    log: dict[str, float] = {}
    wf, fast = Workflow.start(int).add("fast", sleeper("fast", 1, log=log))
    wf, slow = wf.add("slow", sleeper("slow", 5, log=log))
    wf, _ = wf.add("after_fast", sleeper("after_fast", 1, log=log), after=fast)
    wf, _ = wf.add("after_both", sleeper("after_both", 1, log=log), after=(fast, slow))
    t0 = trio.current_time()
    await run(wf.build(), 0)
    # Not level by level: after_fast starts at 1, not when slow ends at 5.
    assert {k: v - t0 for k, v in log.items()} == {"fast": 0, "slow": 0, "after_fast": 1, "after_both": 5}
    assert trio.current_time() - t0 == 6


async def test_limits_apply_to_nodes(autojump_clock: trio.testing.MockClock) -> None:
    wf = Workflow.start(int, errors=str)
    for i in range(10):
        wf, _ = wf.add(f"n{i}", sleeper(f"n{i}", 1))
    t0 = trio.current_time()
    await run(wf.build(), 0, max_concurrency=3)
    assert trio.current_time() - t0 == 4
    t0 = trio.current_time()
    await run(wf.build().limit(5), 0)
    assert trio.current_time() - t0 == 2


# --------------------------------------------------------------------------
# Failures


def _diamond(log: dict[str, float]) -> Workflow[int, str]:
    """fetch -> (bad, good, slow); bad -> report; slow -> tail."""
    wf, fetch = Workflow.start(int, errors=str).add("fetch", sleeper("fetch", 1, log=log))
    wf, bad = wf.add("bad", sleeper("bad", 1, fails=True, log=log), after=fetch)
    wf, good = wf.add("good", sleeper("good", 2, log=log), after=fetch)
    wf, slow = wf.add("slow", sleeper("slow", 5, log=log), after=fetch)
    wf, report = wf.add("report", sleeper("report", 1, log=log), after=(bad, good))
    wf, _ = wf.add("final", sleeper("final", 1, log=log), after=report)
    wf, _ = wf.add("tail", sleeper("tail", 1, log=log), after=slow)
    return wf


async def test_failure_continue_skips_dependents_only(autojump_clock: trio.testing.MockClock) -> None:
    log: dict[str, float] = {}
    t0 = trio.current_time()
    error = failed(await run(_diamond(log).build(), 0))
    assert trio.current_time() - t0 == 7  # fetch 1 + slow 5 + tail 1
    assert error.outcomes == {
        "fetch": NodeSucceeded("fetch"),
        "bad": NodeFailed("bad broke"),
        "good": NodeSucceeded("good"),
        "slow": NodeSucceeded("slow"),
        "report": NodeSkipped(because="bad"),
        "final": NodeSkipped(because="report"),
        "tail": NodeSucceeded("tail"),
    }
    assert error.first == "bad" and error.error == "bad broke"
    assert error.errors == {"bad": "bad broke"}
    assert "report" not in log and "final" not in log
    assert "report: NodeSkipped(because='bad')" in str(error)


async def test_failure_cancel_stops_independent_branches(autojump_clock: trio.testing.MockClock) -> None:
    log: dict[str, float] = {}
    wf = _diamond(log)
    wf, _ = wf.add("waiting", sleeper("waiting", 1, log=log), after=wf_handle(wf, "slow"))
    t0 = trio.current_time()
    error = failed(await run(wf.build(on_failure="cancel"), 0))
    assert trio.current_time() - t0 == 2  # the failure of `bad` at 2 cancels the rest
    assert error.outcomes == {
        "fetch": NodeSucceeded("fetch"),
        "bad": NodeFailed("bad broke"),
        "good": NodeCancelled(started=True),
        "slow": NodeCancelled(started=True),
        "report": NodeSkipped(because="bad"),
        "final": NodeSkipped(because="report"),
        "tail": NodeCancelled(started=False),
        "waiting": NodeCancelled(started=False),
    }


def wf_handle(wf: Workflow[int, str], name: str) -> Node[str]:
    """Test-only: a handle by name (the builder keeps them in its index)."""
    link = wf._lineage.names[name]
    return Node(link)


async def test_first_failure_is_earliest_and_values_are_kept(autojump_clock: trio.testing.MockClock) -> None:
    wf, a = Workflow.start(int).add("a", sleeper("a", 3, fails=True))
    wf, b = wf.add("b", sleeper("b", 1, fails=True))
    wf, c = wf.add("c", sleeper("c", 2))
    error = failed(await run(wf.build(), 0))
    assert error.first == "b"
    assert error.value(c) == "c"
    assert error.outcome(a) == NodeFailed("a broke")
    with pytest.raises(LookupError, match="'a' did not succeed"):
        error.value(a)
    with pytest.raises(KeyError):
        error.outcome("zz")


async def test_unexpected_exception_propagates_as_itself() -> None:
    async def boom(x: int) -> Result[int, str]:
        raise RuntimeError("boom")

    wf, a = Workflow.start(int).add("a", agent(boom))
    wf, _ = wf.add("b", sleeper("b", 10))
    with pytest.raises(RuntimeError, match="boom") as info:
        await run(wf.build().named("flow"), 0)
    assert any("'flow/a'" in note for note in info.value.__notes__)


# --------------------------------------------------------------------------
# A workflow is an agent


def _pipeline() -> Agent[int, int, WorkflowFailed[Crashed]]:
    wf, a = Workflow.start(int, errors=Crashed).add("inc", lift(lambda x: x + 1))
    wf, b = wf.add("dbl", lift(lambda x: x * 2), after=a)
    wf, c = wf.add("sum", lift(lambda t: t[0] + t[1]), after=(a, b))
    return wf.build(output=c)


async def test_composes_with_operators(autojump_clock: trio.testing.MockClock) -> None:
    flow = _pipeline()
    # 1 -> inc 2, dbl 4, sum 6
    assert await run(flow, 1) == Success(6)
    assert await run(pure(len) >> flow >> pure(str), "x") == Success("6")
    assert await run(flow | pure(lambda x: -x), 1) == Success((6, -1))
    slow, _ = Workflow.start(int).add("slow", sleeper("slow", 10))
    timed = slow.build().named("flow").timeout(3)
    t0 = trio.current_time()
    assert await run(timed, 0) == Failure(TimedOut("flow.timeout", 3.0))
    assert trio.current_time() - t0 == 3


async def test_retry_reruns_the_whole_workflow(autojump_clock: trio.testing.MockClock) -> None:
    calls: list[int] = []

    async def flaky(x: int) -> Result[int, str]:
        calls.append(x)
        return Success(x) if len(calls) >= 3 else Failure("flaky")

    wf, f = Workflow.start(int).add("flaky", agent(flaky))
    result = await run(wf.build(output=f).retry(3), 7)
    assert result == Success(7) and len(calls) == 3


async def test_nests_and_paths_show_nesting() -> None:
    def broken(x: int) -> int:
        raise ValueError("bad input")

    inner, i1 = Workflow.start(int).add("prep", pure(lambda x: x + 1))
    inner, _ = inner.add("crash", lift(broken), after=i1)
    outer, o1 = Workflow.start(int).add("start", pure(abs))
    outer, _ = outer.add("sub", inner.build(), after=o1)
    error = failed(await run(outer.build().named("top"), 5))
    sub = error.outcome("sub")
    assert isinstance(sub, NodeFailed)
    inner_error = sub.error
    assert isinstance(inner_error, WorkflowFailed)
    crashed = inner_error.error
    assert isinstance(crashed, Crashed)
    assert crashed.path == "top/sub/crash"
    assert inner_error.value(i1) == 6


async def test_events_carry_node_paths() -> None:
    recorder = Recorder()
    wf, a = Workflow.start(int).add("a", pure(abs))
    wf, _ = wf.add("b", pure(str), after=a)
    await run(wf.build().named("flow"), -1, observer=recorder)
    started = [e.path for e in recorder.events if e.kind is EventKind.STARTED]
    assert started == ["flow", "flow/a", "flow/b"]


async def test_static_paths_match_runtime_paths() -> None:
    """Tree walkers (journal, drawings) derive paths from children(): they agree."""
    inner, i1 = Workflow.start(int).add("prep", pure(ident))
    inner, _ = inner.add("twice", pure(ident) >> pure(ident), after=i1)
    outer, o1 = Workflow.start(int).add("start", pure(ident))
    outer, _ = outer.add("sub", inner.build(), after=o1)
    flow = outer.build().named("top")
    static: set[str] = set()
    stack: list[tuple[Agent[Any, Any, Any], str]] = [(flow, flow.name)]
    while stack:
        node, path = stack.pop()
        static.add(path)
        kids = node.children()
        stack.extend((k, path + seg) for k, seg in zip(kids, segments(kids), strict=True))
    recorder = Recorder()
    await run(flow, 1, observer=recorder)
    runtime = {e.path for e in recorder.events if e.kind is EventKind.STARTED}
    assert runtime <= static
    assert "top/sub/twice/ident[1]" in runtime


def test_mermaid_draws_the_dag() -> None:
    wf, a = Workflow.start(int).add("a", pure(ident))
    wf, b = wf.add("b", pure(ident), after=a)
    wf, c = wf.add("c", pure(ident))
    text = to_mermaid(wf.depend(c, on=b).build())
    assert 'subgraph s1["workflow"]' in text
    assert "n2 --> n3" in text  # a -> b carries data
    assert "n3 -.-> n4" in text  # c waits for b without data


# --------------------------------------------------------------------------
# Scale: no recursion, linear building


async def test_ten_thousand_chain(autojump_clock: trio.testing.MockClock) -> None:
    limit = sys.getrecursionlimit()
    wf, prev = Workflow.start(int).add("n0", pure(lambda x: x + 1))
    for i in range(1, 10_000):
        wf, prev = wf.add(f"n{i}", pure(lambda x: x + 1), after=prev)
    flow = wf.build(output=prev)
    hash(flow), repr(flow)[:10], flow == wf.build(output=prev)
    assert await run(flow, 0) == Success(10_000)
    closing = wf.depend("n0", on=prev)
    with pytest.raises(CycleError) as info:
        closing.build()
    assert len(info.value.cycle) == 10_001
    assert sys.getrecursionlimit() == limit


async def test_ten_thousand_independent(autojump_clock: trio.testing.MockClock) -> None:
    wf = Workflow.start(int, errors=str)
    handles: list[Node[str]] = []
    for i in range(10_000):
        wf, h = wf.add(f"n{i}", sleeper(f"n{i}", 1))
        handles.append(h)
    wf, total = wf.add("total", pure(len), after=handles)
    t0 = trio.current_time()
    assert await run(wf.build(output=total), 0) == Success(10_000)
    assert trio.current_time() - t0 == 1


# --------------------------------------------------------------------------
# Property: random DAGs against a reference scheduler


@attrs.frozen
class Spec:
    """A random DAG: node i depends on lower-numbered nodes only."""

    durations: tuple[int, ...]
    fails: tuple[bool, ...]
    data: tuple[tuple[int, ...], ...]
    single: tuple[bool, ...]  # one data dep given as `after=h`, not a 1-tuple
    order: tuple[tuple[int, int], ...]  # (node, on): ordering-only edges
    order_at: tuple[int, ...]  # build step after which each depend() is made


@st.composite
def specs(draw: st.DrawFn, min_duration: int = 0) -> Spec:
    n = draw(st.integers(1, 12))
    durations = tuple(draw(st.lists(st.integers(min_duration, 4), min_size=n, max_size=n)))
    fails = tuple(draw(st.lists(st.integers(0, 3).map(lambda k: k == 0), min_size=n, max_size=n)))
    data = tuple(
        tuple(draw(st.lists(st.integers(0, i - 1), max_size=3))) if i else () for i in range(n)
    )
    single = tuple(len(d) == 1 and draw(st.booleans()) for d in data)
    order = tuple(
        (i, j)
        for i in range(n)
        for j in (draw(st.lists(st.integers(0, i - 1), max_size=2, unique=True)) if i else [])
    )
    order_at = tuple(draw(st.lists(st.integers(0, n), min_size=len(order), max_size=len(order))))
    return Spec(durations, fails, data, single, order, order_at)


def _value(i: int, arg: object) -> int:
    if isinstance(arg, int):
        h = arg
    else:
        assert isinstance(arg, tuple)
        h = 17
        for item in arg:
            h = (h * 31 + item) % 1_000_003
    return (h * 7 + i) % 1_000_003


def build_spec(spec: Spec, starts: dict[str, float]) -> Workflow[int, str]:
    def leaf(i: int) -> Agent[object, int, str]:
        async def fn(arg: object) -> Result[int, str]:
            starts[f"n{i}"] = trio.current_time()
            await trio.sleep(spec.durations[i])
            return Failure(f"e{i}") if spec.fails[i] else Success(_value(i, arg))

        return agent(fn)

    wf = Workflow.start(int, errors=str)
    handles: list[Node[int]] = []

    def depend_at(step: int) -> None:
        nonlocal wf
        for (node, on), at in zip(spec.order, spec.order_at, strict=True):
            if at == step:
                # Names when a node does not exist yet; handles when both do.
                if node < len(handles) and on < len(handles) and (node + on) % 2:
                    wf = wf.depend(handles[node], on=handles[on])
                else:
                    wf = wf.depend(f"n{node}", on=f"n{on}")

    depend_at(0)
    for i, deps in enumerate(spec.data):
        if not deps:
            wf, h = wf.add(f"n{i}", leaf(i))
        elif spec.single[i]:
            wf, h = wf.add(f"n{i}", leaf(i), after=handles[deps[0]])
        else:
            wf, h = wf.add(f"n{i}", leaf(i), after=[handles[d] for d in deps])
        handles.append(h)
        depend_at(i + 1)
    return wf


@attrs.frozen
class Ref:
    status: tuple[str, ...]  # "ok", "failed", "skipped"
    start: tuple[float | None, ...]
    finish: tuple[float | None, ...]
    bad_at: tuple[float | None, ...]  # when the node failed or was skipped
    because: tuple[frozenset[str], ...]  # acceptable `because` names
    values: tuple[int | None, ...]


def reference(spec: Spec, x: int) -> Ref:
    """The plain scheduler: start = max finish of predecessors, in index order."""
    n = len(spec.durations)
    preds = [set(spec.data[i]) | {on for node, on in spec.order if node == i} for i in range(n)]
    status: list[str] = []
    start: list[float | None] = []
    finish: list[float | None] = []
    bad_at: list[float | None] = []
    because: list[frozenset[str]] = []
    values: list[int | None] = []
    for i in range(n):
        bad = [p for p in preds[i] if status[p] != "ok"]
        if bad:
            when = min(bad_at[p] or 0.0 for p in bad)
            status.append("skipped")
            start.append(None)
            finish.append(None)
            bad_at.append(when)
            because.append(frozenset(f"n{p}" for p in bad if bad_at[p] == when))
            values.append(None)
            continue
        s = max((finish[p] or 0.0 for p in preds[i]), default=0.0)
        f = s + spec.durations[i]
        deps = spec.data[i]
        arg: object = x if not deps else values[deps[0]] if spec.single[i] else tuple(values[d] for d in deps)
        start.append(s)
        finish.append(f)
        because.append(frozenset())
        if spec.fails[i]:
            status.append("failed")
            bad_at.append(f)
            values.append(None)
        else:
            status.append("ok")
            bad_at.append(None)
            values.append(_value(i, arg))
    return Ref(tuple(status), tuple(start), tuple(finish), tuple(bad_at), tuple(because), tuple(values))


def _run_spec(
    spec: Spec, policy: Literal["continue", "cancel"], recorder: Recorder | None = None
) -> tuple[Result[WorkflowResult, WorkflowFailed[str]], dict[str, float], float]:
    starts: dict[str, float] = {}
    flow = build_spec(spec, starts).build(on_failure=policy).named("wf")

    async def main() -> tuple[Result[WorkflowResult, WorkflowFailed[str]], float]:
        result = await run(flow, 3, observer=recorder)
        return result, trio.current_time()

    result, elapsed = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return result, starts, elapsed


def _outcomes(result: Result[WorkflowResult, WorkflowFailed[str]]) -> dict[str, NodeOutcome[str]]:
    if isinstance(result, Success):
        return {name: NodeSucceeded(v) for name, v in result.unwrap().as_dict().items()}
    return result.failure().outcomes


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs(), st.booleans())
def test_random_dags_match_reference_scheduler(spec: Spec, observed: bool) -> None:
    recorder = Recorder() if observed else None
    result, starts, elapsed = _run_spec(spec, "continue", recorder)
    if recorder is not None:
        # The observer sees each node start at the same instant, under its path.
        seen = {e.path: e.time for e in recorder.events if e.kind is EventKind.STARTED}
        assert {p.removeprefix("wf/"): t for p, t in seen.items() if p != "wf"} == starts
    ref = reference(spec, 3)
    outcomes = _outcomes(result)
    n = len(spec.durations)
    for i in range(n):
        name, outcome = f"n{i}", outcomes[f"n{i}"]
        if ref.status[i] == "ok":
            assert outcome == NodeSucceeded(ref.values[i])
        elif ref.status[i] == "failed":
            assert outcome == NodeFailed(f"e{i}")
        else:
            assert isinstance(outcome, NodeSkipped) and outcome.because in ref.because[i], (outcome, ref)
        # Every node that runs starts exactly when its last dependency finished.
        assert starts.get(name) == ref.start[i]
    # Total time is the critical path of what ran.
    assert elapsed == max((f for f in ref.finish if f is not None), default=0.0)
    assert isinstance(result, Success) == all(s == "ok" for s in ref.status)
    if isinstance(result, Failure):
        first = result.failure().first
        failures = [ref.finish[i] for i in range(n) if ref.status[i] == "failed"]
        assert ref.finish[int(first[1:])] == min(f for f in failures if f is not None)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs(min_duration=1))
def test_random_dags_cancel_policy(spec: Spec) -> None:
    result, starts, elapsed = _run_spec(spec, "cancel")
    ref = reference(spec, 3)
    n = len(spec.durations)
    failures = [ref.finish[i] or 0.0 for i in range(n) if ref.status[i] == "failed"]
    if not failures:
        assert isinstance(result, Success)
        return
    t = min(failures)
    assert elapsed == t  # the first failure cancels everything still going
    outcomes = _outcomes(result)
    assert isinstance(result, Failure)
    first = result.failure().first
    assert ref.status[int(first[1:])] == "failed" and ref.finish[int(first[1:])] == t
    for i in range(n):
        outcome = outcomes[f"n{i}"]
        s, f = ref.start[i], ref.finish[i]
        if ref.status[i] == "ok" and f is not None and f < t:
            assert outcome == NodeSucceeded(ref.values[i])
        elif s is not None and f is not None and s < t < f:
            assert outcome == NodeCancelled(started=True)
        elif s is not None and s > t:
            assert outcome == NodeCancelled(started=False)
        match outcome:
            case NodeSucceeded():
                assert ref.status[i] == "ok" and f is not None and f <= t
            case NodeFailed():
                assert ref.status[i] == "failed" and f == t
            case NodeSkipped():
                assert ref.status[i] == "skipped" and ref.bad_at[i] == t
            case NodeCancelled(started=True):
                assert s is not None and s <= t and f is not None and f >= t
            case NodeCancelled(started=False):
                assert f"n{i}" not in starts and (s is None or s >= t)


@settings(max_examples=150, deadline=None)
@given(specs(), st.data())
def test_planted_cycles_are_refused_and_real(spec: Spec, data: st.DataObject) -> None:
    n = len(spec.durations)
    members = data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=n, unique=True))
    wf = build_spec(spec, {})
    planted = list(zip(members, members[1:] + members[:1], strict=True))
    for before, after in planted:
        wf = wf.depend(f"n{after}", on=f"n{before}")
    with pytest.raises(CycleError) as info:
        wf.build()
    cycle = info.value.cycle
    edges = {(f"n{d}", f"n{i}") for i in range(n) for d in spec.data[i]}
    edges |= {(f"n{on}", f"n{node}") for node, on in spec.order}
    edges |= {(f"n{b}", f"n{a}") for b, a in planted}
    assert len(cycle) >= 2 and cycle[0] == cycle[-1]
    assert len(set(cycle[:-1])) == len(cycle) - 1
    for a, b in zip(cycle, cycle[1:]):
        assert (a, b) in edges, (a, b, cycle)
    assert " -> ".join(str(c) for c in cycle) in str(info.value)


@settings(max_examples=50, deadline=None)
@given(specs())
def test_acyclic_specs_always_build(spec: Spec) -> None:
    build_spec(spec, {}).build()


# --------------------------------------------------------------------------
# The example


def test_hierarchical_example_runs() -> None:
    from examples import hierarchical

    text = hierarchical.report(["AAPL", "MSFT", "GOOGL", "AMZN", "TSLA"], trio.testing.MockClock(autojump_threshold=0))
    lines = text.splitlines()
    # Critical path: the slower source (0.08) then the slowest analysis (0.12).
    assert lines[0] == "board of 5 symbols took 0.20s of trio time"
    assert sorted(line.split()[0] for line in lines[1:]) == ["AAPL", "AMZN", "GOOGL", "MSFT", "TSLA"]
    failed_text = hierarchical.report(["AAPL", "NFLX"], trio.testing.MockClock(autojump_threshold=0))
    assert "NFLX: failed, inside:" in failed_text
    assert "reconcile: NodeSkipped(because='yahoo')" in failed_text
    assert "rank: NodeSkipped(because='NFLX')" in failed_text


async def test_a_chain_of_nodes_runs_on_in_one_task(autojump_clock: trio.testing.MockClock) -> None:
    """A node whose success readies one dependent runs it on in the same task."""
    from combinators import pure
    from combinators.testing import TaskCounter

    def inc(x: int) -> int:
        return x + 1

    wf, prev = Workflow.start(int).add("n0", pure(inc))
    for i in range(1, 1_000):
        wf, prev = wf.add(f"n{i}", pure(inc), after=prev)
    counter = TaskCounter()
    trio.lowlevel.add_instrument(counter)
    try:
        result = await run(wf.build(output=prev), 0)
    finally:
        trio.lowlevel.remove_instrument(counter)
    assert result == Success(1_000)
    assert counter.spawned == 1  # the root's task; every later node continues in it


# --------------------------------------------------------------------------
# Property: a workflow of generated trees is the composition it stands for
#
# The DAG *shapes* above come from ``specs()`` (edges, ordering-only edges,
# handles or names: a graph, which a tree strategy does not draw); the
# agents at the nodes here come from the one tree strategy,
# ``combinators.testing.agent_trees``.


def _shape(value: Any) -> Any:
    """``value`` with node paths blanked and every leaf's name (its error) made the same.

    Of simultaneous failures inside a fail-fast group, trio's scheduling
    decides which is reported (DESIGN §3): two runs may name different
    leaves, and nothing else.
    """
    match value:
        case Success(inner):
            return Success(_shape(inner))
        case Failure(inner):
            return Failure(_shape(inner))
        case TimedOut():
            return attrs.evolve(value, path="")
        case str():
            return "leaf" if value.startswith("leaf") else value
        case tuple() | list():
            return type(value)(_shape(v) for v in value)
    return value


def _workflow_error(result: Result[Any, Any]) -> Result[Any, Any]:
    """A workflow's failure as the error of the node that failed first."""
    match result:
        case Failure(WorkflowFailed() as failed):
            return Failure(failed.error)
    return result


@settings(max_examples=60, deadline=None)
@given(agent_trees(max_leaves=6), agent_trees(max_leaves=6), st.integers(1, 3))
def test_a_chain_of_nodes_is_a_sequence(a: Agent[Any, Any, Any], b: Agent[Any, Any, Any], x: int) -> None:
    """``b`` after ``a`` in a workflow: the result and time of ``a >> b``."""
    wf, first = Workflow.start(object).add("a", a)
    wf, second = wf.add("b", b, after=first)
    got, took = run_virtual(wf.build(output=second), x)
    expected, expected_time = run_virtual(a >> b, x)
    assert took == expected_time
    assert _shape(_workflow_error(got)) == _shape(expected)


@settings(max_examples=60, deadline=None)
@given(agent_trees(max_leaves=6), agent_trees(max_leaves=6), st.integers(1, 3))
def test_independent_nodes_under_cancel_are_a_group(a: Agent[Any, Any, Any], b: Agent[Any, Any, Any], x: int) -> None:
    """Two independent nodes with ``on_failure="cancel"``: the result and time of ``a | b``."""
    wf, left = Workflow.start(object).add("a", a)
    wf, right = wf.add("b", b)
    result, took = run_virtual(wf.build(on_failure="cancel"), x)
    expected, expected_time = run_virtual(a.transform(lambda v: v) | b.transform(lambda v: v), x)
    assert took == expected_time
    got: Result[Any, Any] = result
    if isinstance(result, Success):
        got = Success((result.unwrap()[left], result.unwrap()[right]))
    assert _shape(_workflow_error(got)) == _shape(expected)
