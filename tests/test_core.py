"""The foundation: leaves, operators, paths, cancellation, errors, depth."""

from __future__ import annotations

import functools
import sys
from typing import Any, Never, cast

import pytest
import trio
import trio.testing
from returns.result import Failure, Result, Success

from combinators import (
    Agent,
    AgentTypeError,
    BuildError,
    Crashed,
    Parallel,
    agent,
    fail,
    lift,
    pure,
    run,
    run_sync,
    succeed,
)
from combinators.testing import Calls, TaskCounter, fake, run_virtual


def ident(x: int) -> int:
    return x


def plus_one(x: int) -> int:
    return x + 1


@agent
async def inc(x: int) -> Result[int, str]:
    await trio.sleep(1)
    return Success(x + 1)


@agent
async def boom(x: int) -> Result[int, str]:
    await trio.sleep(1)
    raise ValueError(f"boom on {x}")


# -- leaves ------------------------------------------------------------------------


async def test_leaves_give_their_results(autojump_clock: trio.testing.MockClock) -> None:
    assert await run(inc, 1) == Success(2)
    assert await run(pure(lambda x: x * 3), 2) == Success(6)
    assert await run(succeed("v"), None) == Success("v")
    assert await run(fail("e"), None) == Failure("e")


async def test_lift_turns_exceptions_into_crashed() -> None:
    def parse(text: str) -> int:
        return int(text)

    assert await run(lift(parse), "12") == Success(12)
    result = await run(lift(parse).named("parse"), "x")
    assert isinstance(result, Failure)
    crashed = result.failure()
    assert isinstance(crashed, Crashed)
    assert isinstance(crashed.exception, ValueError)
    assert crashed.path == "parse"


async def test_lift_of_async_function() -> None:
    async def double(x: int) -> int:
        await trio.lowlevel.checkpoint()
        return x * 2

    assert await run(lift(double), 4) == Success(8)


async def test_lift_does_not_swallow_cancellation(autojump_clock: trio.testing.MockClock) -> None:
    async def slow(x: int) -> int:
        await trio.sleep(10)
        return x

    result = await run(lift(slow).timeout(1), 1)
    assert isinstance(result, Failure)
    assert not isinstance(result.failure(), Crashed)


async def test_lift_does_not_convert_base_exceptions() -> None:
    def interrupt(x: int) -> int:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await run(lift(interrupt), 1)


async def test_agent_exception_propagates_as_itself_with_path_note(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tree = (inc >> (inc | boom.named("explode"))).named("pipeline")
    with pytest.raises(ValueError, match="boom on 2") as info:
        await run(tree, 1)
    assert type(info.value) is ValueError  # not an ExceptionGroup
    notes = getattr(info.value, "__notes__", [])
    assert any("pipeline/par/explode" in n for n in notes), notes


async def test_exception_in_transform_names_the_node() -> None:
    tree = pure(ident).named("start").transform(lambda x: 1 // 0).named("div")
    with pytest.raises(ZeroDivisionError) as info:
        await run(tree, 1)
    assert any("'div'" in n for n in getattr(info.value, "__notes__", []))


async def test_agent_returning_a_non_result_is_a_clear_error() -> None:
    async def sloppy(x: int) -> Result[int, str]:
        return x  # type: ignore[return-value]

    with pytest.raises(TypeError, match="sloppy.*must return Success"):
        await run(agent(sloppy), 1)


# -- operators -----------------------------------------------------------------------


async def test_sequence_feeds_success_and_skips_after_failure(
    autojump_clock: trio.testing.MockClock,
) -> None:
    calls = Calls()
    after = fake("after", value=0, calls=calls)
    assert await run(inc >> inc >> inc, 0) == Success(3)
    assert await run(fail("no") >> after, 0) == Failure("no")
    assert calls.started == []


async def test_parallel_gives_a_flat_tuple_in_operand_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    slow = fake("slow", delay=3, fn=lambda x: ("slow", x))
    quick = fake("quick", delay=1, fn=lambda x: ("quick", x))
    group = slow | quick | inc
    assert isinstance(group, Parallel)
    assert len(group.operands) == 3
    start = trio.current_time()
    assert await run(group, 5) == Success((("slow", 5), ("quick", 5), 6))
    assert trio.current_time() - start == 3


async def test_group_on_the_right_stays_nested(autojump_clock: trio.testing.MockClock) -> None:
    assert await run(inc | (inc | inc), 0) == Success((1, (1, 1)))
    named = (inc | inc).named("pair")
    assert await run(named | inc, 0) == Success(((1, 1), 1))


async def test_fail_fast_cancels_siblings_at_their_next_checkpoint(
    autojump_clock: trio.testing.MockClock,
) -> None:
    reached: list[str] = []

    @agent
    async def slow(x: int) -> Result[int, str]:
        await trio.sleep(5)
        reached.append("after sleep")  # must never run
        return Success(x)

    @agent
    async def broken(x: int) -> Result[int, str]:
        await trio.sleep(1)
        return Failure("broken")

    counter = TaskCounter()
    trio.lowlevel.add_instrument(counter)
    start = trio.current_time()
    assert await run(slow | broken | slow, 0) == Failure("broken")
    assert trio.current_time() - start == 1
    assert reached == []
    trio.lowlevel.remove_instrument(counter)
    assert counter.alive == 0  # no task outlives run()


async def test_earliest_failure_wins(autojump_clock: trio.testing.MockClock) -> None:
    late = fake("late", delay=2, error="late")
    early = fake("early", delay=1, error="early")
    assert await run(late | early, 0) == Failure("early")


async def test_caller_cancel_scope_cancels_the_tree(autojump_clock: trio.testing.MockClock) -> None:
    calls = Calls()
    leaf = fake("leaf", delay=10, value=1, calls=calls)
    with trio.move_on_after(2) as scope:
        await run(leaf >> (leaf | leaf), 0)
    assert scope.cancelled_caught
    assert calls.cancelled == [0]
    assert calls.finished == []
    assert calls.running == 0


async def test_transform_map_error_fallback_recover() -> None:
    assert await run(succeed(2).transform(str), None) == Success("2")
    assert await run(fail(2).map_error(str), None) == Failure("2")
    assert await run(fail(2).fallback(succeed("b")), None) == Success("b")
    assert await run(succeed("a").fallback(succeed("b")), None) == Success("a")
    assert await run(fail(2).recover(lambda e: e * 10), None) == Success(20)
    # fallback runs on the same input as the failed agent
    first = pure(ident).transform(lambda x: x + 100) >> fail("x")
    assert await run(first.fallback(pure(ident)), 7) == Success(7)


async def test_handlers_in_a_right_operand_only_cover_that_operand() -> None:
    right = pure(ident).map_error(lambda e: ("mapped", e))
    assert await run(fail("left") >> right, 1) == Failure("left")
    # the same under an outer handler: the inner map_error must not see "left"
    outer = (fail("left") >> right).map_error(lambda e: ("outer", e))
    assert await run(outer, 1) == Failure(("outer", "left"))
    rescued = fail("inner").recover(lambda e: 0)
    assert await run(succeed(5) >> rescued >> pure(lambda x: x + 1), None) == Success(1)
    assert await run(fail("outer") >> rescued, None) == Failure("outer")


def test_precedence_rshift_binds_tighter_than_or() -> None:
    a, b, c = pure(ident).named("a"), pure(ident).named("b"), pure(ident).named("c")
    assert (a | b >> c) == (a | (b >> c))
    assert (a | b >> c) != (cast(Any, a | b) >> c)
    result, _ = run_virtual(a | b >> pure(plus_one), 1)
    assert result == Success((1, 2))


# -- names and paths ----------------------------------------------------------------------


def test_names_default_to_function_names_and_can_be_set() -> None:
    assert inc.name == "inc"
    assert inc.named("plus").name == "plus"
    assert inc.name == "inc"  # immutable
    assert (inc >> inc).name == "seq"
    assert (inc | inc).name == "par"


async def test_paths_show_the_nesting(autojump_clock: trio.testing.MockClock) -> None:
    from combinators import Recorder

    recorder = Recorder()
    tree = (inc.named("fetch") >> (inc.named("value") | inc.named("value")).named("analyze")).named(
        "pipeline"
    )
    await run(tree, 0, observer=recorder)
    paths = {e.path for e in recorder.events}
    assert {"pipeline", "pipeline/fetch", "pipeline/analyze"} <= paths
    assert {"pipeline/analyze/value[0]", "pipeline/analyze/value[1]"} <= paths


def test_agents_are_frozen_hashable_and_compare_by_structure() -> None:
    def f(x: int) -> int:
        return x

    one = pure(f) >> pure(f)
    two = pure(f) >> pure(f)
    assert one == two
    assert hash(one) == hash(two)
    assert one != pure(f)
    assert len({one, two}) == 1
    with pytest.raises(AttributeError):
        one.label = "x"  # type: ignore[misc]


# -- bad input -------------------------------------------------------------------------------


def test_bad_input_is_refused_at_build_time() -> None:
    def sync(x: int) -> Result[int, str]:
        return Success(x)

    with pytest.raises(AgentTypeError, match="not-callable|expects an async function"):
        agent(3)  # type: ignore[call-overload]
    with pytest.raises(AgentTypeError, match="sync function 'sync'.*pure\\(\\)"):
        agent(sync)  # type: ignore[arg-type]
    with pytest.raises(AgentTypeError, match="right operand of >> must be an Agent.*'inc'"):
        inc >> 3  # type: ignore[operator]
    with pytest.raises(AgentTypeError, match="right operand of \\| must be an Agent.*wrap a function"):
        inc | sync  # type: ignore[operator]
    with pytest.raises(AgentTypeError, match="left operand of >> must be an Agent"):
        sync >> inc  # type: ignore[operator]
    with pytest.raises(AgentTypeError, match="transform"):
        inc.transform(5)  # type: ignore[arg-type]
    with pytest.raises(BuildError, match="non-empty"):
        inc.named("")
    with pytest.raises(BuildError, match="'/'"):
        inc.named("a/b")
    with pytest.raises(AgentTypeError, match="pure\\(\\) expects a plain"):
        pure(inc.fn)  # type: ignore[attr-defined]


async def test_misuse_of_an_agent_object_says_what_to_do() -> None:
    with pytest.raises(TypeError, match="await run"):
        await inc  # type: ignore[misc]
    with pytest.raises(TypeError, match="ambiguous"):
        bool(inc)
    with pytest.raises(TypeError, match="run"):
        inc(1)  # type: ignore[operator]


# -- depth and width ---------------------------------------------------------------------------


def test_a_chain_of_100000_steps_builds_runs_and_compares() -> None:
    step = pure(plus_one)
    chain = functools.reduce(lambda a, b: a >> b, [step] * 100_000)
    other = functools.reduce(lambda a, b: a >> b, [step] * 100_000)
    assert sys.getrecursionlimit() < 100_000
    assert chain == other
    assert hash(chain) == hash(other)
    assert repr(chain).count(">>") == 99_999
    assert run_sync(chain, 0) == Success(100_000)
    right = functools.reduce(lambda a, b: b >> a, [step] * 100_000)
    assert run_sync(right, 0) == Success(100_000)


def test_deep_chains_of_transforms_and_fallbacks() -> None:
    tree: Agent[Any, Any, Any] = pure(lambda x: x)
    for _ in range(50_000):
        tree = tree.transform(lambda x: x + 1)
    assert run_sync(tree, 0) == Success(50_000)
    chain: Agent[Any, Any, Any] = fail("0")
    for i in range(50_000):
        chain = chain.fallback(fail(str(i + 1)))
    assert run_sync(chain, 0) == Failure("50000")


def test_a_group_of_10000_operands() -> None:
    step: Agent[int, int, Never] = pure(plus_one)

    def group_of(n: int) -> Agent[int, Any, Never]:
        group: Agent[int, Any, Never] = step
        for _ in range(n - 1):
            group = group | step
        return group

    group = group_of(10_000)
    assert isinstance(group, Parallel)
    assert len(group.operands) == 10_000
    assert hash(group) == hash(group_of(10_000))
    result = run_sync(group, 1)
    assert result == Success((2,) * 10_000)
    assert len(repr(group)) > 10_000


async def test_a_long_chain_spawns_no_task_per_step(autojump_clock: trio.testing.MockClock) -> None:
    counter = TaskCounter()
    chain: Agent[int, int, str] = inc
    for _ in range(9_999):
        chain = chain >> inc
    trio.lowlevel.add_instrument(counter)
    try:
        result = await run(chain.timeout(1e9), 0)
    finally:
        trio.lowlevel.remove_instrument(counter)
    assert result == Success(10_000)
    assert counter.spawned == 0


async def test_observed_bugs_still_end_their_node_with_one_terminal_event(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from combinators import EventKind, Recorder

    async def sloppy(x: int) -> Result[int, str]:
        return x  # type: ignore[return-value]

    for limit in (None, 2):
        recorder = Recorder()
        with pytest.raises(TypeError, match="must return Success"):
            await run(agent(sloppy).named("sloppy"), 1, observer=recorder, max_concurrency=limit)
        kinds = [e.kind for e in recorder.events if e.path == "sloppy"]
        assert kinds == [EventKind.STARTED, EventKind.FAILED]
        with pytest.raises(ValueError, match="boom"):
            await run(boom.named("b") >> inc, 1, observer=recorder, max_concurrency=limit)
        assert [e.kind for e in recorder.events if e.path == "seq/b"] == [EventKind.STARTED, EventKind.FAILED]


async def test_a_failed_run_still_reports_every_result_that_finished(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from combinators import EventKind, Recorder

    recorder = Recorder()
    quick = fake("quick", delay=1, fn=lambda x: ("quick", x)).named("quick")
    broken = fake("broken", delay=2, error="broken").named("broken")
    slow = fake("slow", delay=5, value="slow").named("slow")
    result = await run(inc.named("first") >> (quick | broken | slow), 0, observer=recorder)
    assert result == Failure("broken")
    finished = {e.path: e.value for e in recorder.events if e.kind is EventKind.SUCCEEDED}
    assert finished == {"seq/first": 1, "seq/par/quick": ("quick", 1)}
    cancelled = [e.path for e in recorder.events if e.kind is EventKind.CANCELLED]
    assert cancelled == ["seq/par/slow"]


class _Halt(BaseException):
    """A BaseException that is not a cancellation (like KeyboardInterrupt)."""


def _halt(x: object) -> object:
    raise _Halt(x)


def _halting_trees() -> dict[str, tuple[Agent[Any, Any, Any], object]]:
    from combinators import Workflow, collect, each, first_success, lift, vote

    slow = fake("slow", delay=1, value=0)
    halt = pure(_halt).named("halt")
    wf, _ = Workflow.start(object).add("halt", halt)
    wf, _ = wf.add("slow", slow)
    return {
        "|": (halt | slow, 1),
        "each": (each(lift(_halt)), [1, 2]),
        "collect": (collect(slow | halt), 1),
        "first_success": (first_success(slow, halt), 1),
        "vote": (vote(slow, halt, slow), 1),
        "workflow": (wf.build(), 1),
    }


@pytest.mark.parametrize("name", list(_halting_trees()))
def test_a_base_exception_from_a_branch_comes_out_as_itself(name: str) -> None:
    """Not inside a BaseExceptionGroup: ``except KeyboardInterrupt`` keeps working (DESIGN §1, §5)."""
    tree, x = _halting_trees()[name]
    with pytest.raises(_Halt) as caught:
        run_virtual(tree, x)
    assert type(caught.value) is _Halt


async def test_an_outside_cancel_still_cancels_a_group() -> None:
    slow = fake("slow", delay=5, value=0)
    with trio.move_on_after(1) as scope:
        await run(slow | slow, 0)
    assert scope.cancelled_caught


@pytest.mark.parametrize(
    "build",
    [
        lambda: pure(abs).timeout(True),
        lambda: pure(abs).retry(1, deadline=True),
        lambda: pure(abs).retry(1, deadline="x"),  # type: ignore[arg-type]
    ],
    ids=["timeout(True)", "deadline=True", "deadline='x'"],
)
def test_bad_time_arguments_are_refused_naming_the_node(build: Any) -> None:
    from combinators import BuildError

    with pytest.raises(BuildError, match="abs"):
        build()


def test_lift_refuses_a_generator_function() -> None:
    from combinators import AgentTypeError

    async def agen(x: int) -> Any:
        yield x

    def gen(x: int) -> Any:
        yield x

    for fn in (agen, gen):
        with pytest.raises(AgentTypeError, match="generator function"):
            lift(fn)


def test_a_vote_key_that_raises_is_named() -> None:
    from combinators import vote

    def bad_key(v: object) -> int:
        raise ValueError("no key")

    with pytest.raises(ValueError, match="no key") as caught:
        run_virtual(vote(fake("a", value=1), fake("b", value=1), key=bad_key), 0)
    assert caught.value.__notes__ == ["combinators: raised by the key function 'bad_key' of node 'vote'"]


def test_a_base_exception_from_a_branch_keeps_its_cause() -> None:
    def halt_with_cause(x: object) -> object:
        table: dict[str, int] = {}
        try:
            table["missing"]
        except KeyError as exc:
            raise _Halt(x) from exc
        return x

    with pytest.raises(_Halt) as caught:
        run_virtual(pure(halt_with_cause) | fake("slow", delay=1, value=0), 0)
    assert isinstance(caught.value.__cause__, KeyError)


# -- messages that point the right way (issue 15) ------------------------------------------------


def test_awaiting_run_from_asyncio_says_combinators_runs_on_trio() -> None:
    import asyncio

    with pytest.raises(RuntimeError) as info:
        asyncio.run(run(pure(str.upper).named("a"), "x"))
    message = str(info.value)
    assert "combinators runs agents on trio" in message
    assert "awaited from asyncio" in message
    assert "combinators.aio.run" in message and "run_sync" in message
    assert "must be called from async context" not in message


def test_streaming_from_asyncio_says_combinators_runs_on_trio() -> None:
    import asyncio

    from combinators import stream

    async def main() -> None:
        async with stream(pure(str.upper).named("a"), ["x"]) as outcomes:
            async for _ in outcomes:
                pass

    with pytest.raises(RuntimeError) as info:
        asyncio.run(main())
    message = str(info.value)
    assert "combinators runs agents on trio, and stream() was awaited from asyncio" in message
    assert "combinators.aio.run" in message


def test_run_outside_any_event_loop_says_what_to_call() -> None:
    coro = run(pure(str.upper), "x")
    with pytest.raises(RuntimeError, match="called outside a trio run: .*run_sync"):
        coro.send(None)


async def test_run_sync_inside_trio_says_await_run() -> None:
    with pytest.raises(RuntimeError, match=r"run_sync\(a, x\) was called inside a trio run.*`await run\(agent, x\)`") as info:
        run_sync(pure(str.upper).named("a"), "x")
    assert "Attempted to call run() from inside a run()" not in str(info.value)
