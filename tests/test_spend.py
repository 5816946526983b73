"""Spend control: Usage, .costs/charge, budgets (docs/spend.md)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from contextvars import ContextVar
from fractions import Fraction
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from returns.result import Failure, Result, Success

from combinators import (
    Agent,
    Backoff,
    Budget,
    BuildError,
    Charge,
    EventKind,
    OverBudget,
    Recorder,
    TimedOut,
    Usage,
    agent,
    build_report,
    charge,
    collect,
    converter,
    each,
    first_success,
    pure,
    run,
    run_sync,
    trace_events,
)
from combinators.testing import agent_trees

# --------------------------------------------------------------------------
# Usage


def test_usage_adds_field_by_field_and_unset_stays_unset() -> None:
    a = Usage(calls=1, cost=0.1) + Usage(calls=2, input_tokens=10, cost=0.2)
    assert a == Usage(calls=3, input_tokens=10, output_tokens=None, cost=0.3)
    assert Usage() + Usage() == Usage()
    assert Usage(cost=1) == Usage(cost=1.0) and isinstance(Usage(cost=1).cost, float)


def test_costs_add_as_the_decimals_they_are_written_as() -> None:
    assert (Usage(cost=0.1) + Usage(cost=0.2)).cost == 0.3  # not 0.30000000000000004
    total = Usage()
    for _ in range(10):
        total = total + Usage(cost=0.1)
    assert total.cost == 1.0
    # A budget of 1.0 takes ten reservations of 0.1, and not an eleventh.
    b = Budget(Usage(cost=1.0))
    tenth = b.vector(Usage(cost=0.1))
    for _ in range(10):
        assert b.fits(tenth)
        b.take(tenth)
    assert not b.fits(tenth) and b.reserved == Usage(cost=1.0)


def test_fits_compares_only_the_fields_the_limit_sets() -> None:
    used = Usage(calls=5, input_tokens=100, cost=2.0)
    assert used.fits(Usage(cost=2.0))
    assert not used.fits(Usage(cost=1.99))
    assert used.fits(Usage(calls=5, output_tokens=0))  # unset output_tokens counts as zero
    assert not used.fits(Usage(calls=4))
    assert used <= Usage() and not (used <= Usage(input_tokens=99))
    assert used.exceeds(Usage(calls=5, input_tokens=50, cost=3.0)) == ("input_tokens",)
    assert Usage(cost=0.1).exceeds(None) == ("cost",)


@pytest.mark.parametrize(
    "kwargs", [{"calls": -1}, {"calls": 1.5}, {"calls": True}, {"cost": -0.1}, {"cost": float("nan")}, {"cost": "1"}]
)
def test_usage_refuses_bad_values(kwargs: dict[str, Any]) -> None:
    with pytest.raises(BuildError, match="Usage"):
        Usage(**kwargs)


@given(
    st.builds(
        Usage,
        st.none() | st.integers(0, 10**9),
        st.none() | st.integers(0, 10**9),
        st.none() | st.integers(0, 10**9),
        st.none() | st.floats(0, 1e9, allow_nan=False),
    )
)
def test_usage_round_trips_through_the_converter(u: Usage) -> None:
    back = converter.structure(converter.unstructure(u), Usage)
    assert back == u and type(back.cost) is type(u.cost)


def test_charge_and_over_budget_round_trip() -> None:
    err = OverBudget("b", Usage(cost=1.0), Usage(cost=0.5), Usage(cost=0.25), Usage(cost=0.5), "p/x")
    assert converter.structure(converter.unstructure(err), OverBudget) == err
    ch = Charge(Usage(calls=1), Usage(calls=1, cost=0.5))
    assert converter.structure(converter.unstructure(ch), Charge) == ch


# --------------------------------------------------------------------------
# .costs and charge


def _absolute(x: int) -> int:
    return abs(x)


def priced(name: str, declared: Usage, used: Usage | None = None, *, delay: float = 0.0) -> Agent[Any, Any, str]:
    """A leaf that sleeps ``delay``, charges ``used`` (if given) and echoes its input."""

    async def body(x: Any) -> Result[Any, str]:
        if used is not None:
            charge(used)
        await trio.sleep(delay)
        return Success(x)

    return agent(body).named(name).costs(declared)


def test_costs_is_for_leaves_only() -> None:
    a = pure(_absolute)
    with pytest.raises(BuildError, match=r"only a leaf .* got a seq node"):
        (a >> a).costs(Usage(cost=1.0))
    with pytest.raises(BuildError, match="expected a Usage"):
        a.costs(1.0)  # type: ignore[arg-type]
    assert a.costs(Usage(cost=1.0)) != a
    assert a.costs(Usage(cost=1.0)) == pure(_absolute).costs(Usage(cost=1.0))


async def test_charge_reaches_events_report_and_trace(autojump_clock: trio.testing.MockClock) -> None:
    a = priced("a", Usage(calls=1, cost=0.5), Usage(calls=1, cost=0.25), delay=1)
    b = priced("b", Usage(calls=1, cost=0.5), delay=1)  # does not charge: its declaration counts
    rec = Recorder()
    assert await run((a >> b).named("p"), 1, observer=rec) == Success(1)
    charged = [(e.path, e.value) for e in rec.events if e.kind is EventKind.CHARGED]
    assert charged == [
        ("p/a", Charge(Usage(calls=1, cost=0.25), Usage(calls=1, cost=0.5))),
        ("p/b", Charge(Usage(calls=1, cost=0.5), Usage(calls=1, cost=0.5))),
    ]
    # The charge comes just before the leaf's terminal event.
    kinds = [e.kind for e in rec.events if e.path == "p/a"]
    assert kinds == [EventKind.STARTED, EventKind.CHARGED, EventKind.SUCCEEDED]
    report = build_report(rec.events)
    assert report.usage == Usage(calls=2, cost=0.75)
    assert report["p"].usage == Usage(calls=2, cost=0.75)
    assert report["p/a"].usage == Usage(calls=1, cost=0.25)
    assert "usage calls=2, cost=0.75" in report.table()
    assert converter.structure(converter.unstructure(report), type(report)) == report
    slices = [e for e in trace_events(rec.events)["traceEvents"] if e.get("name") == "a"]
    assert slices[0]["args"]["usage"] == {"calls": 1, "cost": 0.25}


async def test_overspend_is_recorded_as_it_is_and_marked(autojump_clock: trio.testing.MockClock) -> None:
    greedy = priced("greedy", Usage(cost=1.0), Usage(cost=3.0))
    rec = Recorder()
    hold = Budget(Usage(cost=2.0))
    assert await run(greedy, 1, observer=rec, budget=hold) == Success(1)
    report = build_report(rec.events)
    assert report["greedy"].overspent == ("cost",)
    assert "overspent: greedy" in report.table()
    assert hold.spent == Usage(cost=3.0)
    # Once over, the budget refuses every further reservation, even a free one.
    free = priced("free", Usage(cost=0.0))
    result = await run(free, 1, budget=hold)
    assert isinstance(result, Failure) and result.failure().spent == Usage(cost=3.0)


async def test_charge_outside_a_metered_leaf_does_nothing() -> None:
    charge(Usage(cost=1.0))  # no leaf: nothing to count against

    @agent
    async def plain(x: int) -> Result[int, str]:
        charge(Usage(cost=1.0))
        return Success(x)

    rec = Recorder()
    assert await run(plain, 1, observer=rec) == Success(1)
    assert build_report(rec.events).usage is None
    with pytest.raises(TypeError, match="expects a Usage"):
        charge(1.0)  # type: ignore[arg-type]


# --------------------------------------------------------------------------
# Budgets


async def test_budget_stops_leaves_that_do_not_fit(autojump_clock: trio.testing.MockClock) -> None:
    step = priced("step", Usage(cost=0.4), delay=1)
    rec = Recorder()
    result = await run(each(step).budget(Usage(cost=1.0)).named("b"), [1, 2, 3], observer=rec)
    # Two fit at once (0.8); the third (in trio's start order) is refused at once and fails the each.
    error = result.failure()
    assert isinstance(error, OverBudget)
    assert attrs.evolve(error, path="") == OverBudget("b", Usage(cost=1.0), Usage(cost=0.0), Usage(cost=0.8), Usage(cost=0.4))
    assert error.path in {f"b/each/step[{i}]" for i in range(3)}
    assert trio.current_time() == 0  # refused without waiting; fail-fast cancelled the rest


async def test_collect_keeps_the_finished_results(autojump_clock: trio.testing.MockClock) -> None:
    cheap = priced("cheap", Usage(cost=1.0), Usage(cost=0.5), delay=1)
    out = await run(collect(each(cheap)).budget(Usage(cost=2.0)), [1, 2, 3, 4, 5])
    results = out.unwrap()
    oks = [r for r in results if isinstance(r, Success)]
    errors = [r.failure() for r in results if isinstance(r, Failure)]
    # All five start at once: two fit (2 x 1.0 reserved), three are refused.
    assert len(oks) == 2 and len(errors) == 3
    assert all(isinstance(e, OverBudget) and e.asked == Usage(cost=1.0) for e in errors)


async def test_limit_then_budget_refills_as_reservations_settle(autojump_clock: trio.testing.MockClock) -> None:
    cheap = priced("cheap", Usage(cost=1.0), Usage(cost=0.5), delay=1)
    hold = Budget(Usage(cost=2.0))
    out = await run(collect(each(cheap.limit(1))).budget(hold), list(range(6)))
    # One at a time: each reserves 1.0 and settles at 0.5; a fourth would need 1.5 + 1.0.
    assert [isinstance(r, Success) for r in out.unwrap()] == [True] * 3 + [False] * 3
    assert hold.spent == Usage(cost=1.5) and hold.reserved == Usage(cost=0.0)


async def test_nested_budgets_reserve_all_or_nothing(autojump_clock: trio.testing.MockClock) -> None:
    outer = Budget(Usage(cost=10.0), name="outer")
    inner = Budget(Usage(calls=1), name="inner")
    a = priced("a", Usage(calls=1, cost=3.0))
    tree = collect(each(a)).budget(inner).budget(outer)
    out = (await run(tree, [1, 2])).unwrap()
    assert sorted(type(r).__name__ for r in out) == ["Failure", "Success"]
    refused = next(r for r in out if isinstance(r, Failure)).failure()
    assert refused.budget == "inner"
    # The refused leaf took nothing from the outer budget either.
    assert outer.spent == Usage(cost=3.0) and outer.reserved == Usage(cost=0.0)


async def test_every_ending_settles_the_reservation(autojump_clock: trio.testing.MockClock) -> None:
    hold = Budget(Usage(cost=100.0))
    slow = priced("slow", Usage(cost=2.0), delay=10)
    partly = priced("partly", Usage(cost=2.0), Usage(cost=1.0), delay=10)

    @agent
    async def boom(x: int) -> Result[int, str]:
        charge(Usage(cost=0.5))
        raise RuntimeError("bug")

    assert isinstance(await run(slow.timeout(1), 1, budget=hold), Failure)
    assert hold.spent == Usage(cost=2.0)  # cancelled before charging: counted as declared
    assert isinstance(await run(partly.timeout(1), 1, budget=hold), Failure)
    assert hold.spent == Usage(cost=3.0)  # charged before the cancel: its charge
    with pytest.raises(RuntimeError):
        await run(boom.costs(Usage(cost=1.0)), 1, budget=hold)
    assert hold.spent == Usage(cost=3.5) and hold.reserved == Usage(cost=0.0)
    with trio.move_on_after(1):
        await run(slow, 1, budget=hold)
    assert hold.spent == Usage(cost=5.5) and hold.reserved == Usage(cost=0.0)


def test_budget_on_an_undeclared_field_is_refused_at_build_time() -> None:
    a = pure(_absolute).costs(Usage(cost=1.0)).named("a")
    with pytest.raises(BuildError, match=r"a.budget\(\): the budget limits calls, which no leaf below declares"):
        a.budget(Usage(calls=3, cost=2.0))
    with pytest.raises(BuildError, match=r"run\(budget=...\): the budget limits input_tokens"):
        run_sync(a, 1, budget=Usage(input_tokens=3))
    with pytest.raises(BuildError, match="sets no field"):
        a.budget(Usage())
    with pytest.raises(BuildError, match="expected a Usage or a Budget"):
        a.budget(5.0)  # type: ignore[arg-type]


async def test_a_leaf_without_costs_is_free_unless_it_charges(autojump_clock: trio.testing.MockClock) -> None:
    hold = Budget(Usage(cost=1.0))
    declared = priced("declared", Usage(cost=1.0))
    free = pure(_absolute)

    @agent
    async def sneaky(x: int) -> Result[int, str]:
        charge(Usage(cost=0.5))
        return Success(x)

    assert await run((free >> declared).budget(hold), -1) == Success(1)
    # Spent to the limit: a free leaf still fits (it asks nothing), a declared one does not.
    second = await run((free >> declared).budget(hold), -1)
    refused = second.failure()
    assert isinstance(refused, OverBudget) and refused.path == "seq.budget/seq/declared"
    rec = Recorder()
    other = Budget(Usage(cost=1.0))
    assert await run((sneaky >> declared).named("s").budget(other), 1, observer=rec) == Failure(
        OverBudget("budget", Usage(cost=1.0), Usage(cost=0.5), Usage(cost=0.0), Usage(cost=1.0), "s.budget/s/declared")
    )
    assert build_report(rec.events)["s.budget/s/sneaky"].overspent == ("cost",)


async def test_shared_budget_spans_runs(autojump_clock: trio.testing.MockClock) -> None:
    hourly = Budget(Usage(cost=3.0), name="hourly")
    a = priced("a", Usage(cost=1.0)).budget(hourly)
    b = priced("b", Usage(cost=1.0))
    results = [await run(a, 1), await run(b, 1, budget=hourly), await run(a, 1), await run(a, 1)]
    assert [type(r) for r in results] == [Success, Success, Success, Failure]
    assert hourly.remaining == Usage(cost=0.0)


async def test_retries_reserve_per_attempt_and_over_budget_is_retried_only_when_asked(
    autojump_clock: trio.testing.MockClock,
) -> None:
    calls = 0

    @agent
    async def flaky(x: int) -> Result[int, str]:
        nonlocal calls
        calls += 1
        return Failure("no")

    hold = Budget(Usage(calls=2))
    tree = flaky.costs(Usage(calls=1)).retry(5, backoff=Backoff(base=1), when=lambda e: not isinstance(e, OverBudget))
    result = await run(tree, 1, budget=hold)
    assert calls == 2 and isinstance(result.failure(), OverBudget)


async def test_first_success_cancels_the_losers_and_settles_them(autojump_clock: trio.testing.MockClock) -> None:
    hold = Budget(Usage(cost=10.0))
    fast = priced("fast", Usage(cost=2.0), Usage(cost=1.0), delay=1)
    slow = priced("slow", Usage(cost=3.0), delay=5)
    assert await run(first_success(fast, slow), 1, budget=hold) == Success(1)
    assert hold.spent == Usage(cost=4.0) and hold.reserved == Usage(cost=0.0)


# --------------------------------------------------------------------------
# The guarantee, on random trees


@attrs.define
class World:
    """Budgets of one random tree, and what its leaves did."""

    budgets: list[Budget] = attrs.Factory(list)
    started: list[tuple[tuple[Budget, ...], Usage]] = attrs.Factory(list)
    refusals: list[OverBudget] = attrs.Factory(list)
    violations: list[str] = attrs.Factory(list)

    def budget(self, limit: float) -> Budget:
        """A new budget of ``limit`` (cost), watched by :meth:`check`."""
        b = Budget(Usage(cost=limit), name=f"b{len(self.budgets)}")
        self.budgets.append(b)
        return b

    def check(self, when: str) -> None:
        for b in self.budgets:
            for s, r, c in zip(b._spent, b._reserved, b._cap, strict=True):
                if s + r > c:
                    self.violations.append(f"{when}: {b.name} spent {s} + reserved {r} > {c}")


COSTS = st.sampled_from([0.0, 0.1, 0.2, 0.25, 0.3, 1.0, 1.5])
LIMITS = st.sampled_from([0.0, 0.3, 1.0, 2.5])

_names = itertools.count()


#: The World of the example in progress: the budgets drawn join it, the leaves check it.
_WORLD: ContextVar[World] = ContextVar("test_spend.world")


@st.composite
def spending(draw: st.DrawFn) -> Agent[Any, Any, Any]:
    """A leaf that declares a cost, charges its declaration, part of it or nothing, and checks the world's budgets."""
    name = f"l{next(_names)}"
    declared = Usage(calls=1, cost=draw(COSTS))
    used = draw(st.none() | st.builds(lambda f: Usage(calls=1, cost=f * (declared.cost or 0)), st.sampled_from([0.0, 0.5, 1.0])))
    delay = draw(st.integers(0, 3))
    pattern = draw(st.lists(st.booleans(), min_size=1, max_size=3))
    calls = iter(range(1 << 30))

    async def body(x: Any) -> Result[Any, str]:
        world = _WORLD.get()
        world.check(f"{name} start")
        if used is not None:
            charge(used)
        ok = pattern[next(calls) % len(pattern)]
        world.started.append((tuple(world.budgets), used or declared))
        await trio.sleep(delay)
        world.check(f"{name} end")
        return Success(x) if ok else Failure(name)

    return agent(body).named(name).costs(declared)


#: Trees from the one tree strategy with every kind that reserves or settles.
spend_trees = agent_trees(
    max_leaves=8,
    leaves=spending(),
    kinds=("then", "parallel", "fallback", "first_success", "collect", "timeout", "retry", "each", "budget"),
    budgets=LIMITS.map(lambda limit: _WORLD.get().budget(limit)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), st.sampled_from([None, 0.5, 2.0, 5.0]), st.sampled_from([None, 2.0, 7.0]))
def test_no_budget_is_ever_exceeded(data: st.DataObject, root_limit: float | None, cancel_at: float | None) -> None:
    world = World()
    root = None
    if root_limit is not None:
        root = Budget(Usage(cost=root_limit), name="root")
        world.budgets.append(root)

    rec = Recorder()

    async def main(tree: Agent[Any, Any, Any]) -> Result[Any, Any]:
        result: Result[Any, Any] = Failure("cancelled")
        with trio.move_on_after(cancel_at if cancel_at is not None else 1e9):
            if root is not None:
                result = await run(tree, 0, budget=root, observer=rec)
            else:
                result = await run(tree, 0, observer=rec)
        return result

    token = _WORLD.set(world)
    try:
        tree = data.draw(spend_trees)
        result = trio.run(main, tree, clock=trio.testing.MockClock(autojump_threshold=0))
    finally:
        _WORLD.reset(token)
    assert world.violations == []
    for b in world.budgets:
        assert b._reserved == [0] * len(b._reserved), "every reservation was settled"
        assert b.spent.fits(b.limit)
    # Each budget spent exactly what the leaves under it charged (their declaration when they did not).
    if root is not None:
        expected = sum((Fraction(repr(u.cost or 0.0)) for _, u in world.started), Fraction(0))
        assert root._spent[0] == expected * 10**12  # budgets count cost in units of 1e-12
    # OverBudget only where the reservation really did not fit.
    errors: list[Any] = [result.failure()] if isinstance(result, Failure) else []
    errors += [e.error for e in rec.events if e.kind is EventKind.FAILED]
    for e in errors:
        if isinstance(e, OverBudget):
            assert not (e.spent + e.reserved + e.asked).fits(e.limit)
    # Every leaf call that started was charged once, just before it ended.
    assert len([e for e in rec.events if e.kind is EventKind.CHARGED]) == len(world.started)


def test_over_budget_is_named_with_what_did_not_fit() -> None:
    b = Budget(Usage(calls=1, cost=1.0), name="b")
    b.take(b.vector(Usage(calls=1, cost=0.5)))
    err = b.refusal(Usage(calls=1, cost=0.25), "p")
    assert err == OverBudget("b", Usage(calls=1, cost=1.0), Usage(calls=0, cost=0.0), Usage(calls=1, cost=0.5), Usage(calls=1, cost=0.25), "p")
    assert not b.fits(b.vector(Usage(calls=1)))
    assert b.fits(b.vector(Usage(cost=0.5)))



async def test_stream_budget_covers_every_input(autojump_clock: trio.testing.MockClock) -> None:
    from combinators import stream

    step = priced("step", Usage(cost=1.0), delay=1)
    hold = Budget(Usage(cost=3.0))
    async with stream(step, range(10), max_concurrency=2, budget=hold) as outcomes:
        got = sorted([(i, isinstance(r, Success)) async for i, r in outcomes])
    # Two at a time: 0-1 run, 2 runs after them (2 + 1 fits 3), the rest are refused.
    assert sum(ok for _, ok in got) == 3 and hold.spent == Usage(cost=3.0)


# --------------------------------------------------------------------------
# The command line


def _cli(*args: str) -> tuple[int, str, str]:
    import io

    from combinators._cli import main

    out, err = io.StringIO(), io.StringIO()
    code = main(["run", "spend_agents:batch", *args], stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_cli_estimate_prints_and_does_not_run() -> None:
    code, out, err = _cli("--input", '["alpha", "beta", "gamma"]', "--estimate")
    assert (code, err) == (0, "")
    assert out == "most:  calls=3, cost=1.5\nhappy: calls=3, cost=1.5\n"
    code, out, _ = _cli("--input", '["alpha", "beta", "gamma"]', "--estimate", "--budget", '{"cost": 1.0}')
    assert out.startswith("most:  calls=3, cost=1.0\n")


def test_cli_budget_stops_the_run_and_bad_budgets_are_usage_errors() -> None:
    code, out, err = _cli("--input", '["alpha", "beta", "gamma"]', "--budget", '{"cost": 1.0}', "--no-progress")
    assert code == 1 and out == "" and "failed with OverBudget" in err
    code, out, _ = _cli("--input", '["alpha", "beta"]', "--budget", '{"cost": 1.0}', "--no-progress")
    assert code == 0 and json.loads(out) == ["alp", "bet"]
    for bad, why in [
        ("[1]", "an object with some of the fields"),
        ('{"dollars": 1}', "an object with some of the fields"),
        ('{"cost": -1}', "cost must be"),
        ('{"input_tokens": 5}', "no leaf below declares"),
        ("{}", "sets no field"),
    ]:
        code, _, err = _cli("--input", "[]", "--budget", bad)
        assert code == 2 and why in err, (bad, err)


async def test_otel_spans_carry_usage_and_cache_hits(autojump_clock: trio.testing.MockClock) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from combinators import Cache
    from combinators.otel import OtelObserver

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    observer = OtelObserver(provider.get_tracer("test"))
    greedy = priced("greedy", Usage(calls=1, cost=0.5), Usage(calls=1, cost=0.75)).cache(Cache.memory())
    await run(greedy, 1, observer=observer)
    await run(greedy, 1, observer=observer)
    first, second = exporter.get_finished_spans()
    assert first.attributes is not None and second.attributes is not None
    assert first.attributes["combinators.usage.cost"] == 0.75 and first.attributes["combinators.usage.calls"] == 1
    assert tuple(first.attributes["combinators.overspent"]) == ("cost",)  # type: ignore[arg-type]
    assert second.attributes["combinators.cache_hit"] is True and "combinators.usage.cost" not in second.attributes


def test_events_with_charges_round_trip_through_json() -> None:
    from combinators import Event

    event = Event(EventKind.CHARGED, "p/a", 1.0, "leaf", 1, None, Charge(Usage(cost=0.5), Usage(cost=1.0)))
    data = converter.unstructure(event)
    assert data["kind"] == "charged" and data["value"] == {"used": {"calls": None, "input_tokens": None, "output_tokens": None, "cost": 0.5}, "declared": {"calls": None, "input_tokens": None, "output_tokens": None, "cost": 1.0}}
    back = converter.structure(data, Event)
    assert back.kind is EventKind.CHARGED and converter.structure(back.value, Charge) == event.value
