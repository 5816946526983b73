"""A tree's plan is compiled once and reused, unless it holds one run's state.

Reuse is only safe when nothing in the plan belongs to one run: limiters,
rate windows and seeded random sources are per run (DESIGN §5), and an
observer is handed to each run at its root.  These tests pin down both
sides: what is reused, and that per-run state never leaks into another run.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable
from typing import Any, Never

import pytest
import trio
import trio.testing
from returns.result import Failure, Success

from combinators import (
    Agent,
    Backoff,
    EventKind,
    Recorder,
    Workflow,
    agent,
    collect,
    each,
    first_success,
    pure,
    repeat,
    run,
    switch,
    vote,
)
from combinators._run import compile_tree
from combinators.testing import fake, run_virtual

Tree = Agent[Any, Any, Any]


def _plain_trees() -> dict[str, Callable[[], Tree]]:
    def workflow() -> Tree:
        wf, a = Workflow.start(int).add("a", fake("a", delay=1, fn=lambda x: x + 1))
        wf, b = wf.add("b", fake("b", delay=1, fn=lambda x: x * 2), after=a)
        return wf.build(output=b)

    return {
        "chain": lambda: fake("a", delay=1, fn=lambda x: x + 1) >> pure(str),
        "group": lambda: fake("a", delay=1, fn=lambda x: x) | fake("b", delay=2, fn=lambda x: -x),
        "each": lambda: pure(range) >> each(fake("a", delay=1, fn=lambda x: x * 10)),
        "collect": lambda: collect(fake("a", delay=1, fn=lambda x: x) | fake("b", error="no")),
        "first_success": lambda: first_success(fake("a", delay=2, fn=lambda x: x), fake("b", delay=1, error="e")),
        "vote": lambda: vote(fake("a", value=1), fake("b", value=1), fake("c", value=2)),
        "timeout": lambda: fake("slow", delay=5, value=1).timeout(2),
        "seeded retry": lambda: fake("f", delay=1, error="e").retry(2, backoff=Backoff(jitter=1.0, seed=3)),
        "switch": lambda: switch(lambda x: x % 2, {0: pure(str), 1: pure(abs)}),
        "repeat": lambda: repeat(pure(lambda x: x + 1), until=lambda x: x > 3, max_times=10),
        "workflow": workflow,
    }


def _per_run_trees() -> dict[str, Callable[[], Tree]]:
    leaf = fake("a", delay=1, fn=lambda x: x)
    return {
        "limit": lambda: leaf.limit(1),
        "rate": lambda: leaf.rate(1, per=1.0),
        "bind": lambda: leaf.bind(lambda x: pure(str)),
        "limit deep inside": lambda: pure(abs) >> (leaf | leaf.limit(1)),
    }


@pytest.mark.parametrize("make", _plain_trees().values(), ids=list(_plain_trees()))
async def test_a_plan_without_run_state_is_compiled_once(make: Callable[[], Tree]) -> None:
    tree = make()
    assert compile_tree(tree) is compile_tree(tree)


@pytest.mark.parametrize("make", _per_run_trees().values(), ids=list(_per_run_trees()))
async def test_a_plan_with_run_state_is_compiled_for_every_run(make: Callable[[], Tree]) -> None:
    tree = make()
    assert compile_tree(tree) is not compile_tree(tree)


async def test_run_options_with_state_compile_afresh() -> None:
    def inc(x: int) -> int:
        return x + 1

    tree = pure(inc) >> pure(str)
    assert compile_tree(tree, max_concurrency=2) is not compile_tree(tree, max_concurrency=2)


@pytest.mark.parametrize("make", _plain_trees().values(), ids=list(_plain_trees()))
def test_a_reused_plan_gives_the_same_result_and_time(make: Callable[[], Tree]) -> None:
    tree = make()
    first = run_virtual(tree, 3)
    assert run_virtual(tree, 3) == first
    assert run_virtual(tree, 4) == run_virtual(make(), 4)


@pytest.mark.parametrize("make", [*_plain_trees().values(), *_per_run_trees().values()])
def test_a_cached_plan_does_not_keep_its_tree_alive(make: Callable[[], Tree]) -> None:
    tree = make()
    run_virtual(tree, 3)
    run_virtual(tree, 3, observer=Recorder())
    ref = weakref.ref(tree)
    del tree
    gc.collect()
    assert ref() is None


def test_each_run_has_its_own_limiter() -> None:
    """Two concurrent runs of one ``limit(1)`` tree do not share the slot."""
    tree = (fake("a", delay=1, value=1) | fake("b", delay=1, value=2)).limit(1)

    async def main() -> float:
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            for _ in range(2):
                nursery.start_soon(run, tree, 0)
        return trio.current_time() - start

    assert trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0)) == 2.0


def test_a_seeded_retry_repeats_exactly_in_any_scheduling_order() -> None:
    """Each element draws its own jitter (seeded by seed and path): trio's order does not matter."""
    flaky = fake("flaky", delay=1, error="e").retry(3, backoff=Backoff(base=1.0, jitter=1.0, seed=42))
    tree = collect(each(flaky))

    def retry_times() -> dict[str, list[float]]:
        recorder = Recorder()
        run_virtual(tree, list(range(6)), observer=recorder)
        t0 = recorder.events[0].time
        times: dict[str, list[float]] = {}
        for e in recorder.events:
            if e.kind is EventKind.RETRIED:
                times.setdefault(e.path, []).append(e.time - t0)
        return times

    first = retry_times()
    assert len({tuple(t) for t in first.values()}) == 6  # every element its own jitter
    for _ in range(10):
        assert retry_times() == first


def test_a_seeded_retry_repeats_exactly_run_after_run() -> None:
    """The jitter source is per run: a seeded run gives the same delays every time."""
    tree = fake("flaky", delay=1, error="e").retry(3, backoff=Backoff(base=1.0, jitter=0.5, seed=7))
    first = run_virtual(tree, 0)
    assert isinstance(first[0], Failure)
    assert run_virtual(tree, 0) == first


def test_concurrent_runs_report_to_their_own_observers() -> None:
    tree = fake("a", delay=1, fn=lambda x: x) >> fake("b", delay=1, fn=lambda x: x + 1)
    left, right = Recorder(), Recorder()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: run(tree, 1, observer=left))
            nursery.start_soon(lambda: run(tree, 2, observer=right))
            nursery.start_soon(run, tree, 3)  # unobserved: reports to nobody

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    for recorder, x in ((left, 1), (right, 2)):
        assert [(e.kind, e.path) for e in recorder.events] == [
            (EventKind.STARTED, "seq"),
            (EventKind.STARTED, "seq/a"),
            (EventKind.SUCCEEDED, "seq/a"),
            (EventKind.STARTED, "seq/b"),
            (EventKind.SUCCEEDED, "seq/b"),
            (EventKind.SUCCEEDED, "seq"),
        ]
        assert recorder.events[-1].value == x + 1


def test_a_nested_run_reports_to_its_own_observer_only() -> None:
    def magnitude(x: int) -> int:
        return abs(x)

    inner_tree = pure(magnitude).named("inner")
    inner_events = Recorder()

    async def call_inner(x: int) -> Success[int]:
        result = await run(inner_tree, x, observer=inner_events)
        return Success(result.unwrap())

    outer = agent(call_inner).named("outer") >> pure(str).named("show")
    outer_events = Recorder()
    assert run_virtual(outer, -5, observer=outer_events)[0] == Success("5")
    assert {e.path for e in inner_events.events} == {"inner"}
    assert {e.path for e in outer_events.events} == {"seq", "seq/outer", "seq/show"}


def test_equal_looking_trees_never_share_a_plan() -> None:
    """``1 == True == 1.0``, but each tree runs as itself, alone or in a chain."""
    from combinators import fail, run_sync, succeed

    ones = [succeed(1), succeed(True), succeed(1.0)]
    assert [run_sync(t, None) for t in ones] == [Success(1), Success(True), Success(1.0)]
    assert [type(run_sync(t, None).unwrap()) for t in ones] == [int, bool, float]
    chains = [t >> pure(type) for t in ones]
    assert [run_sync(c, None) for c in chains] == [Success(int), Success(bool), Success(float)]
    assert run_sync(fail(0), None) == Failure(0)
    assert type(run_sync(fail(False), None).failure()) is bool
    assert succeed(1) != succeed(True)
    assert succeed(1) == succeed(1)


def test_bind_keeps_equal_looking_choices_apart() -> None:
    """bind shares one compiled runner between equal agents within a run, never between 1 and True."""
    from combinators import run_sync, succeed

    def ident(x: int) -> int:
        return x

    def pick(x: int) -> Agent[object, int, Never]:
        return succeed(1) if x else succeed(True)

    choose = pure(ident).bind(pick)
    values = run_sync(each(choose), [1, 0, 1]).unwrap()
    assert [type(v) for v in values] == [int, bool, int]


def test_a_tree_whose_leaf_refers_back_to_it_is_still_freed() -> None:
    """Plans live on the tree: a bound-method leaf on an object holding the tree is a plain cycle."""

    class Bot:
        def __init__(self) -> None:
            self.tree = (agent(self.think) | agent(self.think)).named("bot")

        async def think(self, x: int) -> Success[int]:
            return Success(x)

    refs = []
    for _ in range(20):
        bot = Bot()
        run_virtual(bot.tree, 1)
        run_virtual(bot.tree, 1, observer=Recorder())
        refs.append(weakref.ref(bot))
    del bot
    gc.collect()
    assert [r() for r in refs] == [None] * 20
