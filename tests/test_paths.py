"""Node names and paths name the user's agents; trees too deep to run are refused when built.

Issue 15, items 7 and 6: an error value or a note must let a newcomer find
the agent they wrote (``sentiment``), not only the library's wrapper kinds;
a tree nested deeper than ``MAX_DEPTH`` is a ``BuildError`` naming the
limit, never a bare ``RecursionError`` from running or drawing it.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any, Never

import pytest
import trio
from returns.result import Failure, Result, Success

from combinators import (
    AllFailed,
    Agent,
    BuildError,
    Crashed,
    Recorder,
    TimedOut,
    Workflow,
    agent,
    build_report,
    collect,
    each,
    fail,
    first_success,
    lift,
    pure,
    run,
    run_sync,
    to_mermaid,
)
from combinators._expr import MAX_DEPTH


@agent
async def sentiment(x: int) -> Result[int, str]:
    await trio.sleep(1 if x == 4 else 0)
    return Success(x)


@agent
async def topic(x: int) -> Result[int, str]:
    return Success(x)


def ident(x: Any) -> Any:
    return x


def first_of(t: Any) -> Any:
    return t[0]


def unwrap(r: Result[Any, Any]) -> Any:
    return r.unwrap()


# --------------------------------------------------------------------------
# Names


async def test_the_newcomers_timeout_names_the_agent_it_cut_off(autojump_clock: Any) -> None:
    tree: Agent[Any, Any, Any] = each(pure(ident).named("prep") >> (topic | sentiment.timeout(0.25))).limit(3)
    result = await run(tree, range(6))
    assert result == Failure(TimedOut("each.limit/each/seq[4]/par/sentiment.timeout", 0.25))
    assert "sentiment" in repr(result)


def test_a_wrapper_is_named_after_the_innermost_user_name() -> None:
    a = pure(ident).named("a")
    assert a.timeout(1).name == "a.timeout"
    assert a.timeout(1).retry(2).name == "a.retry"  # not a.timeout.retry: names stay short
    assert a.limit(2).name == "a.limit"
    assert a.transform(str).recover(str).name == "a.recover"
    assert a.fallback(topic).name == "a.fallback"
    assert a.rate(5).name == "a.rate"
    assert sentiment.timeout(1).named("fast").retry(1).name == "fast.retry"
    assert (a >> topic).timeout(1).name == "seq.timeout"  # a composite is named by its kind
    assert each(a).limit(3).name == "each.limit"


async def test_nested_wrappers_give_one_segment_each(autojump_clock: Any) -> None:
    rec = Recorder()
    slow = sentiment.timeout(0.25).retry(1)
    assert await run(slow, 4, observer=rec) == Failure(TimedOut("sentiment.retry/sentiment.timeout", 0.25))
    paths = {e.path for e in rec.events}
    assert paths == {
        "sentiment.retry",
        "sentiment.retry/sentiment.timeout",
        "sentiment.retry/sentiment.timeout/sentiment",
    }


def test_path_length_stays_linear_in_the_depth_of_wrappers() -> None:
    t: Agent[int, int, Any] = sentiment
    for _ in range(100):
        t = t.timeout(5)
    names = []
    node: Any = t
    while hasattr(node, "inner"):
        names.append(node.name)
        node = node.inner
    assert set(names) == {"sentiment.timeout"}


async def test_each_element_paths_name_the_agent(autojump_clock: Any) -> None:
    result = await run(each(sentiment.timeout(0.25)), range(6))
    assert result == Failure(TimedOut("each/sentiment.timeout[4]", 0.25))
    kept = await run(collect(each(sentiment.timeout(0.25))), range(6))
    assert kept.unwrap()[4] == Failure(TimedOut("collect/each/sentiment.timeout[4]", 0.25))


async def test_first_success_and_fallback_errors_name_each_agent(autojump_clock: Any) -> None:
    race = first_success(sentiment.timeout(0.25), topic.timeout(0.25) >> fail("no"))
    result = await run(race, 4)
    assert result == Failure(AllFailed((TimedOut("first_success/sentiment.timeout", 0.25), "no")))
    backup = sentiment.timeout(0.25).fallback(sentiment.timeout(0.5))
    assert await run(backup, 4) == Failure(TimedOut("sentiment.fallback/sentiment.timeout[1]", 0.5))


async def test_a_workflow_error_names_the_node(autojump_clock: Any) -> None:
    wf, score = Workflow.start(int).add("score", sentiment.timeout(0.25))
    result = await run(wf.build(), 4)
    assert "score" in repr(result) and "TimedOut(path='workflow/score'" in repr(result)


async def test_a_note_on_an_escaping_exception_names_the_agent(autojump_clock: Any) -> None:
    @agent
    async def broken(x: int) -> Result[int, str]:
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError) as info:
        await run(each(broken.timeout(1).retry(2)).limit(2), [1])
    assert any("each.limit/each/broken.retry[0]/broken.timeout/broken" in n for n in info.value.__notes__)


async def test_a_lift_crash_path_ends_with_the_agent(autojump_clock: Any) -> None:
    def invert(x: int) -> float:
        return 1 / x

    inverse = lift(invert).named("inverse")
    result = await run(inverse.timeout(1).retry(1), 0)
    match result:
        case Failure(Crashed(path=path)):
            assert path == "inverse.retry/inverse.timeout/inverse"
        case _:
            pytest.fail(f"expected a Crashed, got {result!r}")


# --------------------------------------------------------------------------
# Depth


def _grow(step: Callable[[Agent[Any, Any, Any]], Agent[Any, Any, Any]]) -> tuple[Agent[Any, Any, Any], BuildError]:
    """Wrap a leaf with ``step`` until the build is refused: the deepest tree accepted and the refusal."""
    t: Agent[Any, Any, Any] = pure(ident).named("leaf")
    for _ in range(2 * MAX_DEPTH + 10):
        try:
            t = step(t)
        except BuildError as exc:
            return t, exc
    pytest.fail("never refused")


LEAF = pure(ident).named("leaf")
SHAPES: dict[str, Callable[[Agent[Any, Any, Any]], Agent[Any, Any, Any]]] = {
    "timeout": lambda t: t.timeout(5),
    "alternating | and >>": lambda t: (t | LEAF) >> pure(first_of),
    "retry of timeout": lambda t: t.timeout(5).retry(1),
    "collect of a group": lambda t: collect(t | LEAF) >> pure(first_of) >> pure(unwrap),
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_a_tree_at_the_depth_limit_runs_draws_reports_pickles_and_compares(shape: str) -> None:
    tree, refusal = _grow(SHAPES[shape])
    assert MAX_DEPTH - 3 <= tree._depth <= MAX_DEPTH
    assert str(MAX_DEPTH) in str(refusal) and "nests" in str(refusal)
    rec = Recorder()
    assert run_sync(tree, 7, observer=rec) == Success(7)
    assert build_report(rec.events).nodes
    assert to_mermaid(tree).startswith("flowchart")
    again = pickle.loads(pickle.dumps(tree))
    assert again == tree and hash(again) == hash(tree)
    assert again == _grow(SHAPES[shape])[0]

    async def in_a_task() -> Result[Any, Any]:
        out: list[Result[Any, Any]] = []
        async with trio.open_nursery() as nursery:

            async def go() -> None:
                out.append(await run(tree, 7, observer=Recorder()))

            nursery.start_soon(go)
        return out[0]

    assert trio.run(in_a_task) == Success(7)


def test_a_tree_deeper_than_the_limit_is_refused_naming_the_node() -> None:
    t: Agent[int, int, Any] = sentiment
    with pytest.raises(BuildError, match=rf"sentiment\.timeout: this tree nests {MAX_DEPTH + 1} levels deep, more than the {MAX_DEPTH}"):
        for _ in range(1000):
            t = t.timeout(5)


def inc(x: int) -> int:
    return x + 1


def zero(_: object) -> int:
    return 0


def test_chains_and_groups_do_not_count_as_depth() -> None:
    chain: Agent[int, int, Never] = pure(ident)
    for _ in range(5000):
        chain = chain >> pure(ident)
    steps: Agent[int, int, Never] = pure(ident)
    for _ in range(5000):
        steps = steps.transform(ident)
    group: Any = LEAF | LEAF
    for _ in range(5000):
        group = group | LEAF
    assert max(chain._depth, steps._depth, group._depth) <= 3
    assert each(chain).limit(2)._depth <= 5
    assert run_sync(steps, 1) == Success(1)
    assert to_mermaid(steps).count("transform") == 5000


@pytest.mark.parametrize("step", ["recover", "transform", "map_error", "fallback"])
def test_a_chain_alternating_with_handlers_builds_and_runs_at_any_length(step: str) -> None:
    """Was: refused past about 124 steps, though compiling and running loop over it."""
    grow: dict[str, Callable[[Agent[int, int, Any]], Agent[int, int, Any]]] = {
        "recover": lambda x: x.recover(zero) >> pure(inc),
        "transform": lambda x: (x >> pure(inc)).transform(ident),
        "map_error": lambda x: x.map_error(ident) >> pure(inc),
        "fallback": lambda x: x.fallback(pure(inc)) >> pure(inc),
    }
    tree: Agent[int, int, Any] = pure(inc)
    for _ in range(2000):
        tree = grow[step](tree)
    recorder = Recorder()
    assert run_sync(tree, 0, observer=recorder) == Success(2001)
    assert len(build_report(recorder.events).nodes) > 2000
    assert tree == tree and pickle.loads(pickle.dumps(tree)) == tree
    # Drawing recurses there: a clear refusal, never a RecursionError.
    with pytest.raises(ValueError, match="nests too deeply to draw"):
        to_mermaid(tree)


def test_long_trees_pickle_without_recursion_and_keep_sharing() -> None:
    chain: Agent[int, int, Never] = pure(ident)
    for _ in range(20_000):
        chain = chain >> pure(ident)
    again = pickle.loads(pickle.dumps(chain))
    assert again == chain
    assert run_sync(again, 3) == Success(3)
    shared = LEAF.timeout(1)
    pair = pickle.loads(pickle.dumps(shared | shared))
    first, second = pair.operands
    assert first is second
