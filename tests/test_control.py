"""switch, when, bind and repeat: against a plain reference evaluator, and edge cases."""

from __future__ import annotations

import gc
import importlib
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any, Never

import attrs
import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from returns.result import Failure, Result, Success

from combinators import (
    Agent,
    AgentTypeError,
    BuildError,
    GaveUp,
    Journal,
    NoBranch,
    Recorder,
    TimedOut,
    agent,
    fail,
    pure,
    repeat,
    run,
    succeed,
    switch,
    to_mermaid,
    when,
)
from combinators._control import Repeat, Switch, When
from combinators._expr import Bind, Leaf, Then
from combinators.testing import agent_trees

ROOT = Path(__file__).resolve().parent.parent

# --------------------------------------------------------------------------
# Trees over ints from the one tree strategy, combinators.testing.agent_trees
# (>>, switch, when, repeat and bind), with leaves of our own; run by the
# interpreter, and evaluated by the plain reference evaluator below, which
# reads the real nodes and calls their own key, predicate and choice functions.

Outcome = tuple[str, Any]  # ("ok", value) | ("err", error), NoBranch without its path

#: The idents of the leaves started by the run in progress, in order.
LOG: list[int] = []


@attrs.frozen
class Step:
    """A leaf's function: log ``ident``, sleep ``delay``, then give ``x + add`` or fail."""

    ident: int
    delay: int
    add: int
    fail_mod: int  # 0: never fails; else fails where x % fail_mod == 0

    async def __call__(self, x: int) -> Result[int, tuple[str, int, int]]:
        LOG.append(self.ident)
        await trio.sleep(self.delay)
        if self.fail_mod and x % self.fail_mod == 0:
            return Failure(("leaf", self.ident, x))
        return Success(x + self.add)


@attrs.frozen
class Mod:
    """A switch key (and a bind choice): ``x % n``."""

    n: int

    def __call__(self, x: int) -> int:
        return x % self.n


@attrs.frozen
class Divisible:
    """A when / repeat condition: ``x % n == 0``."""

    n: int

    def __call__(self, x: int) -> bool:
        return x % self.n == 0


@attrs.frozen
class AtLeast:
    """A when / repeat condition: ``x >= threshold``."""

    threshold: int

    def __call__(self, x: int) -> bool:
        return x >= self.threshold


def normalise(result: Result[Any, Any]) -> Outcome:
    if isinstance(result, Success):
        return ("ok", result.unwrap())
    error = result.failure()
    if isinstance(error, NoBranch):
        return ("err", ("nobranch", error.key))
    return ("err", error)


def reference(node: Agent[Any, Any, Any], x: int, log: list[int]) -> tuple[Outcome, int]:
    """Plain evaluation: the outcome and the time it takes (DESIGN §6)."""
    match node:
        case Leaf(fn=Step(ident, delay, add, fail_mod)):
            log.append(ident)
            if fail_mod and x % fail_mod == 0:
                return ("err", ("leaf", ident, x)), delay
            return ("ok", x + add), delay
        case Then(first=first, second=second):
            out, t1 = reference(first, x, log)
            if out[0] == "err":
                return out, t1
            out, t2 = reference(second, out[1], log)
            return out, t1 + t2
        case Switch(key=key, keys=keys, branches=branches, default=default):
            k = key(x)
            if k in keys:
                return reference(branches[keys.index(k)], x, log)
            if default is not None:
                return reference(default, x, log)
            return ("err", ("nobranch", k)), 0
        case When(pred=pred, then=then, otherwise=otherwise):
            return reference(then if pred(x) else otherwise, x, log)
        case Repeat(step=step, until=until, max_times=max_times):
            state, total = x, 0
            for _ in range(max_times):
                out, t = reference(step, state, log)
                total += t
                if out[0] == "err":
                    return out, total
                state = out[1]
                if until(state):
                    return out, total
            return ("err", GaveUp(state, max_times)), total
        case Bind(inner=first, f=choose):
            out, t1 = reference(first, x, log)
            if out[0] == "err":
                return out, t1
            v = out[1]
            out, t2 = reference(choose(v), v, log)
            return out, t1 + t2
    raise AssertionError(node)  # pragma: no cover


leaves = st.builds(
    Step,
    st.integers(0, 10**6),
    st.integers(0, 2),
    st.integers(-2, 4),
    st.sampled_from([0, 0, 0, 3, 5]),
).map(lambda step: agent(step).named(f"leaf{step.ident}"))

trees = agent_trees(
    max_leaves=8,
    leaves=leaves,
    kinds=("then", "switch", "when", "repeat", "bind"),
    max_width=3,
    keys=st.integers(2, 4).map(Mod),
    predicates=st.integers(2, 3).map(Divisible) | st.integers(-5, 12).map(AtLeast),
)


def run_timed(
    tree: Agent[int, int, Any], x: int, observer: Recorder | None = None, max_concurrency: int | None = None
) -> tuple[Result[int, Any], float]:
    async def main() -> tuple[Result[int, Any], float]:
        start = trio.current_time()
        result = await run(tree, x, observer=observer, max_concurrency=max_concurrency)
        return result, trio.current_time() - start

    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trees, st.integers(-6, 12), st.booleans(), st.sampled_from([None, 1]))
def test_matches_reference_evaluator(tree: Agent[int, int, Any], x: int, observe: bool, max_concurrency: int | None) -> None:
    """Outcome, leaves run (and their order) and trio time equal the reference exactly.

    In every mode: with or without an observer, with or without a run-wide
    limit of one leaf at a time (these trees are sequential, so it costs nothing).
    """
    ref_log: list[int] = []
    expected, expected_time = reference(tree, x, ref_log)
    LOG.clear()
    recorder = Recorder() if observe else None
    result, took = run_timed(tree, x, recorder, max_concurrency)
    assert normalise(result) == expected
    assert LOG == ref_log  # exactly the chosen branches, exactly as many rounds
    assert took == expected_time
    if recorder is not None:
        # every node that started also finished, and leaves started as logged
        kinds = [e.kind.value for e in recorder.events]
        assert kinds.count("started") * 2 == len(kinds)
        leaf_starts = [e for e in recorder.events if e.kind.value == "started" and e.node == "leaf"]
        assert len(leaf_starts) == len(LOG)


@settings(max_examples=60, deadline=None)
@given(trees, st.lists(trees, min_size=1, max_size=3), st.integers(-6, 12))
def test_bind_equals_running_the_chosen_agent_by_hand(
    a: Agent[int, int, Any], options: list[Agent[int, int, Any]], x: int
) -> None:
    def choose(v: int) -> Agent[int, int, Any]:
        return options[v % len(options)]

    bound_result, bound_time = run_timed(a.bind(choose), x)
    first_result, t1 = run_timed(a, x)
    if isinstance(first_result, Success):
        v = first_result.unwrap()
        by_hand, t2 = run_timed(choose(v), v)
    else:
        by_hand, t2 = first_result, 0.0
    assert normalise(bound_result) == normalise(by_hand)
    assert bound_time == t1 + t2


# --------------------------------------------------------------------------
# switch and when


def ident(x: int) -> int:
    return x


def plus1(x: int) -> int:
    return x + 1


def lower(s: str) -> str:
    return s.lower()


def slow(name: str, delay: float, f: Callable[[int], int] = lambda x: x) -> Agent[int, int, Never]:
    async def body(x: int) -> Result[int, Never]:
        await trio.sleep(delay)
        return Success(f(x))

    return agent(body).named(name)


async def test_switch_every_branch_is_a_node_but_only_the_chosen_one_runs(autojump_clock: Any) -> None:
    a, b, d = slow("a", 1), slow("b", 2), slow("d", 3)
    tree = switch(lambda x: x % 3, {0: a, 1: b}, default=d).named("route")
    assert tree.children() == (a, b, d)
    assert list(tree.walk()) == [tree, a, b, d]
    for x, path, took in [(3, "route/a", 1), (4, "route/b", 2), (5, "route/d", 3)]:
        rec = Recorder()
        start = trio.current_time()
        assert await run(tree, x, observer=rec) == Success(x)
        assert trio.current_time() - start == took
        assert [(e.kind.value, e.path) for e in rec.events] == [
            ("started", "route"),
            ("started", path),
            ("succeeded", path),
            ("succeeded", "route"),
        ]


async def test_switch_missing_key_is_a_failure_not_a_key_error() -> None:
    size: Agent[str, int, Never] = pure(len)
    tree = switch(lower, {"x": size}).named("pick")
    assert await run(tree, "X") == Success(1)
    assert await run(tree, "y") == Failure(NoBranch("y", "pick"))
    nested = (pure(str.strip) >> tree).named("outer")
    assert await run(nested, " z ") == Failure(NoBranch("z", "outer/pick"))


async def test_switch_branch_names_repeat_get_indexed_paths() -> None:
    same = pure(ident)
    tree = switch(ident, {1: same, 2: same}, default=same).named("s")
    rec = Recorder()
    await run(tree, 2, observer=rec)
    assert [e.path for e in rec.events] == ["s", "s/ident[1]", "s/ident[1]", "s"]


async def test_switch_failure_of_branch_is_the_result() -> None:
    boom: Agent[int, int, str] = fail("boom")
    zero: Agent[int, int, Never] = succeed(0)
    tree = switch(lambda x: x > 0, {True: boom, False: zero})
    assert await run(tree, 1) == Failure("boom")
    assert await run(tree, -1) == Success(0)


async def test_switch_key_function_raising_is_a_bug_with_a_note() -> None:
    one: Agent[int, int, Never] = succeed(1)
    tree = switch(lambda x: 1 // x, {1: one}, default=one).named("div")
    with pytest.raises(ZeroDivisionError) as info:
        await run(tree, 0)
    assert any("'div'" in n for n in info.value.__notes__)


async def test_when_picks_by_truthiness(autojump_clock: Any) -> None:
    tree = when(lambda x: x % 2, slow("odd", 1, abs), slow("even", 2, lambda _: -1)).named("w")
    rec = Recorder()
    start = trio.current_time()
    assert await run(tree, -3, observer=rec) == Success(3)
    assert trio.current_time() - start == 1
    assert await run(tree, 4, observer=rec) == Success(-1)
    assert trio.current_time() - start == 3
    assert [e.path for e in rec.events if e.kind.value == "started"] == ["w", "w/odd", "w", "w/even"]


def test_repr_reads_like_the_dsl() -> None:
    inc = pure(plus1).named("inc")

    def is_big(x: int) -> bool:
        return x > 9

    assert repr(switch(is_big, {True: inc}, default=inc)) == (
        "switch(is_big, {True: pure(plus1).named('inc')}, default=pure(plus1).named('inc'))"
    )
    assert repr(when(is_big, inc, inc)) == "when(is_big, pure(plus1).named('inc'), pure(plus1).named('inc'))"
    assert repr(repeat(inc, until=is_big, max_times=3)) == (
        "repeat(pure(plus1).named('inc'), until=is_big, max_times=3)"
    )
    assert repr(inc.bind(lambda v: inc)) == "pure(plus1).named('inc').bind(lambda)"


def test_nodes_are_equal_and_hash_by_structure() -> None:
    inc = pure(plus1)

    def key(x: int) -> int:
        return x

    assert switch(key, {1: inc}) == switch(key, {1: inc})
    assert hash(switch(key, {1: inc})) == hash(switch(key, {1: inc}))
    assert switch(key, {1: inc}) != switch(key, {2: inc})
    assert repeat(inc, until=bool, max_times=2) == repeat(inc, until=bool, max_times=2)
    assert repeat(inc, until=bool, max_times=2) != repeat(inc, until=bool, max_times=3)


def test_mermaid_draws_every_branch_with_its_case() -> None:
    a, b, d = slow("a", 1), slow("b", 1), slow("d", 1)

    def parity(x: int) -> int:
        return x % 2

    text = to_mermaid(switch(parity, {0: a, 1: b}, default=d).named("route"))
    assert 'subgraph s1["route"]' in text
    assert 'n2{"switch on parity"}' in text
    for edge in ('n2 -- "0" --> n3', 'n2 -- "1" --> n4', 'n2 -- "default" --> n5'):
        assert edge in text
    loop = to_mermaid(repeat(a, until=bool, max_times=3))
    assert "repeat until bool, at most 3x" in loop and '-. "next round" .->' in loop
    bound = to_mermaid(a.bind(lambda v: b))
    assert "agent chosen at run time" in bound and '"b"' not in bound


# --------------------------------------------------------------------------
# bind


async def test_bind_paths_are_keyed_by_the_choice(autojump_clock: Any) -> None:
    fast, careful = slow("fast", 1, lambda x: x * 10), slow("careful", 5, lambda x: x * 100)
    pick = pure(plus1).named("pick").bind(lambda v: fast if v < 5 else careful).named("b")
    rec = Recorder()
    assert await run(pick, 1, observer=rec) == Success(20)
    assert await run(pick, 9, observer=rec) == Success(1000)
    started = [e.path for e in rec.events if e.kind.value == "started"]
    assert started == ["b", "b/pick", "b/bind[fast]", "b", "b/pick", "b/bind[careful]"]
    keyed = pure(ident).named("p").bind(lambda v: fast, key=lambda v: f"v{v}").named("k")
    rec = Recorder()
    await run(keyed, 7, observer=rec)
    assert [e.path for e in rec.events if e.kind.value == "started"] == ["k", "k/p", "k/bind[v7]"]
    # the chosen agent is not a child: drawings show bind with its first operand only
    assert keyed.children() == (keyed.children()[0],)


async def test_bind_skips_f_when_the_first_agent_fails() -> None:
    called: list[int] = []

    def f(v: int) -> Agent[int, int, Never]:
        called.append(v)
        return pure(lambda x: x)

    first: Agent[int, int, str] = fail("no")
    assert await run(first.bind(f), 1) == Failure("no")
    assert called == []


async def test_bind_f_returning_a_non_agent_is_a_clear_error() -> None:
    not_an_agent: Any = lambda y: y  # noqa: E731
    tree = pure(ident).bind(lambda v: not_an_agent).named("b")
    with pytest.raises(AgentTypeError, match=r"bind\(\) at 'b' returned function"):
        await run(tree, 1)


async def test_bind_shares_one_compile_for_equal_fresh_agents(autojump_clock: Any) -> None:
    """``f`` builds a new ``.limit(1)`` tree per call; equal trees share the limiter."""
    work = slow("work", 1)
    tree = pure(ident).bind(lambda v: work.limit(1))
    start = trio.current_time()
    assert await run(tree | tree, 3) == Success((3, 3))
    assert trio.current_time() - start == 2  # serialised by the one shared limiter


# --------------------------------------------------------------------------
# repeat


async def test_repeat_round_paths_and_events(autojump_clock: Any) -> None:
    loop = repeat(slow("inc", 1, lambda x: x + 1), until=lambda x: x >= 3, max_times=5).named("loop")
    rec = Recorder()
    start = trio.current_time()
    assert await run(loop, 0, observer=rec) == Success(3)
    assert trio.current_time() - start == 3
    assert [(e.kind.value, e.path) for e in rec.events] == [
        ("started", "loop"),
        ("started", "loop/round-1/inc"),
        ("succeeded", "loop/round-1/inc"),
        ("started", "loop/round-2/inc"),
        ("succeeded", "loop/round-2/inc"),
        ("started", "loop/round-3/inc"),
        ("succeeded", "loop/round-3/inc"),
        ("succeeded", "loop"),
    ]


async def test_repeat_gives_up_with_the_last_state_after_max_times() -> None:
    loop = repeat(pure(lambda x: x - 1), until=lambda x: x > 100, max_times=4)
    assert await run(loop, 0) == Failure(GaveUp(-4, 4))


async def test_repeat_checks_until_only_after_a_round() -> None:
    loop = repeat(pure(lambda x: x + 1), until=lambda x: x > 0, max_times=3)
    assert await run(loop, 50) == Success(51)


async def test_repeat_failing_round_ends_the_loop() -> None:
    calls: list[int] = []

    @agent
    async def step(x: int) -> Result[int, str]:
        calls.append(x)
        return Failure(f"bad {x}") if x == 2 else Success(x + 1)

    assert await run(repeat(step, until=lambda x: x > 10, max_times=9), 0) == Failure("bad 2")
    assert calls == [0, 1, 2]


async def test_timeout_around_the_loop_cancels_mid_round(autojump_clock: Any) -> None:
    finished: list[int] = []

    @agent
    async def step(x: int) -> Result[int, Never]:
        await trio.sleep(1)
        finished.append(x)
        return Success(x + 1)

    loop = repeat(step, until=lambda x: False, max_times=10).timeout(3.5).named("t")
    rec = Recorder()
    start = trio.current_time()
    assert await run(loop, 0, observer=rec) == Failure(TimedOut("t", 3.5))
    assert trio.current_time() - start == 3.5
    assert finished == [0, 1, 2]
    assert ("cancelled", "t/step.repeat/round-4/step") in [(e.kind.value, e.path) for e in rec.events]


async def test_timeout_inside_each_round(autojump_clock: Any) -> None:
    @agent
    async def step(x: int) -> Result[int, Never]:
        await trio.sleep(5 if x == 2 else 1)
        return Success(x + 1)

    loop = repeat(step.timeout(2), until=lambda x: x >= 4, max_times=10).named("r")
    start = trio.current_time()
    assert await run(loop, 0) == Failure(TimedOut("r/round-3/step.timeout", 2.0))
    assert trio.current_time() - start == 1 + 1 + 2
    # a round that fits its timeout does not disturb the loop
    assert await run(loop, 3) == Success(4)


async def test_a_loop_of_pure_steps_can_be_cancelled() -> None:
    """Pure steps never checkpoint; the loop does, once per round, so a sibling's
    failure cancels it at once instead of after all its rounds."""
    spin = repeat(pure(ident), until=lambda x: False, max_times=10**7)
    stop: Agent[int, int, str] = fail("stop")
    assert await run(spin | stop, 0) == Failure("stop")


def _rounds_peak(n: int) -> int:
    loop = repeat(pure(lambda x: x + 1), until=lambda x: x >= n, max_times=n)
    gc.collect()
    tracemalloc.start()
    try:
        result = trio.run(run, loop, 0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result == Success(n)
    return peak


def test_repeat_of_100_000_rounds_has_no_recursion_and_no_growth_per_round() -> None:
    small = _rounds_peak(1_000)
    big = _rounds_peak(100_000)
    # 99,000 more rounds: anything kept per round would add megabytes.
    assert big < small + 64 * 1024, (small, big)


# --------------------------------------------------------------------------
# the journal resumes loops and binds by their keyed paths


async def test_a_resumed_repeat_continues_from_the_last_finished_round() -> None:
    calls: list[int] = []
    crash = [True]

    def step(x: int) -> int:
        calls.append(x)
        if x == 2 and crash[0]:
            raise RuntimeError("machine lost")
        return x + 1

    loop = repeat(pure(step).named("step"), until=lambda x: x >= 5, max_times=10).named("loop")
    journal = Journal.memory()
    with pytest.raises(RuntimeError, match="machine lost"):
        await run(loop, 0, journal=journal, run_id="r")
    assert calls == [0, 1, 2]
    crash[0] = False
    calls.clear()
    assert await run(loop, 0, journal=journal, run_id="r") == Success(5)
    assert calls == [2, 3, 4]  # rounds 1 and 2 came from the journal
    paths = [r.path for r in await journal.records("r")]
    assert paths == [f"loop/round-{r}/step" for r in range(1, 6)]


async def test_a_resumed_bind_replays_the_chosen_agent() -> None:
    calls: list[str] = []

    def small(x: int) -> str:
        calls.append("small")
        return f"small {x}"

    def large(x: int) -> str:
        calls.append("large")
        return f"large {x}"

    options = {True: pure(small).named("small"), False: pure(large).named("large")}
    tree = pure(plus1).named("p").bind(lambda v: options[v < 10]).named("b")
    journal = Journal.memory()
    assert await run(tree, 3, journal=journal, run_id="r") == Success("small 4")
    assert await run(tree, 3, journal=journal, run_id="r") == Success("small 4")
    assert calls == ["small"]
    assert [r.path for r in await journal.records("r")] == ["b/bind[small]", "b/p"]


# --------------------------------------------------------------------------
# bad input


def test_bad_input_is_refused_at_build_time() -> None:
    inc = pure(plus1)
    for bad in (0, -1, 1.5, True, "3"):
        with pytest.raises(BuildError, match="max_times must be an int >= 1"):
            repeat(inc, until=bool, max_times=bad)  # type: ignore[arg-type]
    with pytest.raises(BuildError, match="no branches and no default"):
        switch(lambda x: x, {})
    with pytest.raises(AgentTypeError, match="switch\\(\\) branch 'b' must be an Agent"):
        not_agents: dict[Any, Any] = {"a": inc, "b": len}
        switch(ident, not_agents)
    with pytest.raises(AgentTypeError, match="switch\\(\\) default must be an Agent"):
        switch(lambda x: x, {"a": inc}, default=3)  # type: ignore[call-overload]
    with pytest.raises(AgentTypeError, match="switch\\(\\) key"):
        switch(3, {"a": inc})  # type: ignore[call-overload]
    with pytest.raises(AgentTypeError, match="branches must be a mapping"):
        switch(lambda x: x, [inc])  # type: ignore[call-overload]
    with pytest.raises(AgentTypeError, match="otherwise-branch must be an Agent"):
        when(bool, inc, None)  # type: ignore[arg-type]
    with pytest.raises(AgentTypeError, match="repeat\\(\\) step must be an Agent"):
        repeat(len, until=bool, max_times=2)  # type: ignore[arg-type]
    with pytest.raises(AgentTypeError, match="bind\\(\\)"):
        inc.bind(3)  # type: ignore[arg-type]
    # a switch with only a default is fine
    assert switch(lambda x: x, {}, default=inc).children() == (inc,)


# --------------------------------------------------------------------------
# examples


def _example_main(name: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.syspath_prepend(str(ROOT))
    module = importlib.import_module(f"examples.{name}")
    lines: list[str] = trio.run(module.main, clock=trio.testing.MockClock(autojump_threshold=0))
    return lines


def test_conditional_example_routes_by_regime(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = _example_main("conditional", monkeypatch)
    body = {line.split()[0]: line for line in lines[2:]}
    assert set(body) == {"AAPL", "MSFT", "GOOGL", "AMZN", "TSLA"}
    # each symbol takes fetch (0.05 s) plus its own analyst's time only
    assert "trending -> trading" in body["AAPL"] and "[0.13s]" in body["AAPL"]
    assert "steady   -> value" in body["MSFT"] and "[0.15s]" in body["MSFT"]
    assert "volatile -> quality" in body["TSLA"] and "[0.17s]" in body["TSLA"]
    assert not any("disagrees" in line for line in lines)
    assert lines[1] == "bound tree:  fetch_quote"  # bind is opaque to drawings


def test_refine_loop_example_revises_and_gives_up(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = _example_main("refine_loop", monkeypatch)
    text = "\n".join(lines)
    for symbol in ("AAPL", "MSFT", "GOOGL", "AMZN", "TSLA"):
        assert symbol in text
    assert any(line.startswith("MSFT  [1 round(s), 0.75s]") for line in lines)
    assert any(line.startswith("TSLA  [2 round(s), 1.05s] gave up after 2 rounds") for line in lines)
    assert "write_note/refine/loop/round-2/revision" in text


def test_bind_never_shares_a_runner_between_equal_but_different_constants() -> None:
    """bind shares one compile between agents rebuilt from the same parts, not between equal ones."""
    from decimal import Decimal

    from combinators import each, run_sync, succeed

    def ident(s: str) -> str:
        return s

    def price(s: str) -> Agent[object, Decimal, Never]:
        return succeed(Decimal(s))

    def number(s: str) -> Agent[object, float, Never]:
        return succeed(float(s))

    got = run_sync(each(pure(ident).bind(price)), ["1.0", "1.00", "1"]).unwrap()
    assert [str(d) for d in got] == ["1.0", "1.00", "1"]
    signs = run_sync(each(pure(ident).bind(number)), ["0.0", "-0.0"]).unwrap()
    assert [str(v) for v in signs] == ["0.0", "-0.0"]


def test_bind_shares_one_limiter_between_agents_rebuilt_from_equal_parts() -> None:
    """``f`` building ``work.retry(1).limit(1)`` afresh each time (a new Backoff each time) still shares the limit."""
    from combinators import each, run_sync
    from combinators.testing import fake, run_virtual

    work = fake("work", delay=1, value=1)

    def ident(x: int) -> int:
        return x

    tree = each(pure(ident).bind(lambda v: work.retry(1).limit(1)))
    result, elapsed = run_virtual(tree, [1, 2, 3, 4])
    assert result == Success([1, 1, 1, 1])
    assert elapsed == 4.0  # one at a time: the four rebuilt limits are one
    assert run_sync(each(pure(ident)), [1]) == Success([1])
