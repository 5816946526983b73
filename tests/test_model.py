"""The interpreter against a plain reference evaluator, on generated trees.

The trees come from the one strategy users get too,
:func:`combinators.testing.agent_trees`, here with leaves of our own (each
sleeps whole seconds of trio time, then succeeds or fails, always the
same way) and every node kind it builds: ``>>``, ``|`` groups of up to
four, ``transform``, ``map_error``, ``fallback``, ``recover``, ``timeout``,
``retry`` and ``limit(1)`` over a group of succeeding leaves.  Each tree is run under
``MockClock(autojump_threshold=0)``; the result and the elapsed trio time
must equal what the reference gives (DESIGN §6, exactly).

The reference reads the tree the interpreter runs, node by node (plain
recursion, no trio), applying the nodes' own functions; it returns a *set*
of acceptable results, because failures at the same instant may be
reported in either order (DESIGN §3).
"""

from __future__ import annotations

import itertools
from typing import Any

import attrs
import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from returns.result import Failure, Result, Success

from combinators import Agent, Recorder, TimedOut, agent
from combinators._expr import Fallback, Leaf, Limit, MapError, Parallel, Recover, Retry, Then, Timeout, Transform
from combinators.testing import DEFAULT_KINDS, agent_trees, run_virtual

Outcome = tuple[str, Any]  # ("ok", value) or ("err", error)


@attrs.frozen
class Step:
    """A leaf's function: sleep ``delay`` seconds, then succeed with ``("L", id, x)`` or fail with ``("E", id)``."""

    id: int
    delay: int
    ok: bool

    async def __call__(self, x: Any) -> Result[Any, Any]:
        await trio.sleep(self.delay)
        return Success(("L", self.id, x)) if self.ok else Failure(("E", self.id))


@attrs.frozen
class Tag:
    """A mapping function the reference can tell apart from the identity: ``v -> (label, v)``."""

    label: str

    def __call__(self, value: Any) -> Any:
        return (self.label, value)


_ids = itertools.count()


@st.composite
def steps(draw: st.DrawFn, *, ok: bool | None = None) -> Agent[Any, Any, Any]:
    step = Step(next(_ids), draw(st.integers(0, 5)), draw(st.booleans()) if ok is None else ok)
    return agent(step).named(f"leaf{step.id}")


trees = agent_trees(
    max_leaves=14,
    leaves=steps(),
    limit_leaves=steps(ok=True),
    kinds=(*DEFAULT_KINDS, "limit"),
    functions=st.sampled_from([Tag("A"), Tag("B")]),
    max_width=4,
)


# -- the reference evaluator -------------------------------------------------------


def ref(node: Agent[Any, Any, Any], x: Any) -> tuple[float, set[Outcome]]:
    """(elapsed, acceptable outcomes) of ``node`` on ``x``; plain recursion, no trio."""
    match node:
        case Leaf(fn=Step(id=id_, delay=delay, ok=ok)):
            return float(delay), {("ok", ("L", id_, x)) if ok else ("err", ("E", id_))}
        case Then(first=a, second=b):
            ta, ra = ref(a, x)
            if _failed(ra):
                return ta, ra
            outs: set[Outcome] = set()
            times = set()
            for _, v in ra:
                tb, rb = ref(b, v)
                times.add(tb)
                outs |= rb
            assert len(times) == 1
            return ta + times.pop(), outs
        case Limit(inner=Parallel() as group, n=1):
            # Succeeding leaves one at a time: the max of a group becomes the sum.
            # (Leaves arriving at the same instant are admitted in either
            # order, so with failures the time would depend on trio's choice.)
            evals = [ref(op, x) for op in group.operands]
            assert not any(_failed(r) for _, r in evals)
            return sum(t for t, _ in evals), {("ok", tuple(next(iter(r))[1] for _, r in evals))}
        case Parallel():
            evals = [ref(op, x) for op in node.operands]
            failing = [(t, r) for t, r in evals if _failed(r)]
            if failing:
                first = min(t for t, _ in failing)
                return first, set().union(*(r for t, r in failing if t == first))
            combos = itertools.product(*(sorted(r, key=repr) for _, r in evals))
            return max(t for t, _ in evals), {("ok", tuple(o[1] for o in c)) for c in combos}
        case Transform(inner=a, f=f):
            ta, ra = ref(a, x)
            return ta, {("ok", f(v)) if k == "ok" else (k, v) for k, v in ra}
        case MapError(inner=a, f=f):
            ta, ra = ref(a, x)
            return ta, {("err", f(v)) if k == "err" else (k, v) for k, v in ra}
        case Fallback(primary=a, backup=b):
            ta, ra = ref(a, x)
            if not _failed(ra):
                return ta, ra
            tb, rb = ref(b, x)
            return ta + tb, rb
        case Recover(inner=a, f=f):
            ta, ra = ref(a, x)
            return ta, {("ok", f(v)) if k == "err" else (k, v) for k, v in ra}
        case Timeout(inner=a, seconds=s):
            ta, ra = ref(a, x)
            return (ta, ra) if ta < s else (s, {("err", ("TO", s))})
        case Retry(inner=a, times=n, backoff=backoff, when=None, deadline=None):
            ta, ra = ref(a, x)
            if not _failed(ra):
                return ta, ra
            waits = sum(backoff.delay(k) for k in range(1, n + 1))
            return ta * (n + 1) + waits, ra
    raise AssertionError(f"the reference does not know {node!r}")


def _failed(outcomes: set[Outcome]) -> bool:
    kinds = {k for k, _ in outcomes}
    assert len(kinds) == 1, outcomes  # success or failure is never a race
    return kinds == {"err"}


def _strip_paths(value: Any) -> Any:
    if isinstance(value, TimedOut):
        return ("TO", value.seconds)
    if isinstance(value, tuple):
        return tuple(_strip_paths(v) for v in value)
    return value


def normalise(result: Result[Any, Any]) -> Outcome:
    """The outcome as the reference spells it (timeouts without their paths)."""
    if isinstance(result, Success):
        return ("ok", _strip_paths(result.unwrap()))
    return ("err", _strip_paths(result.failure()))


# -- the properties --------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(trees, st.integers(0, 100))
def test_interpreter_matches_reference(tree: Agent[Any, Any, Any], x: int) -> None:
    expected_time, expected = ref(tree, x)
    result, elapsed = run_virtual(tree, x)
    assert normalise(result) in expected
    assert elapsed == expected_time
    # A second run reuses the plan compiled for the first (when it holds no
    # run state): same answer, same time.
    again, elapsed_again = run_virtual(tree, x)
    assert normalise(again) in expected
    assert elapsed_again == expected_time


@settings(max_examples=100, deadline=None)
@given(trees, st.integers(0, 100))
def test_same_result_with_observer_and_run_limit(tree: Agent[Any, Any, Any], x: int) -> None:
    """Observing a run, or a generous run-wide limit, changes nothing."""
    expected_time, expected = ref(tree, x)
    recorder = Recorder()
    result, elapsed = run_virtual(tree, x, observer=recorder, max_concurrency=1000)
    assert normalise(result) in expected
    assert elapsed == expected_time
    assert recorder.events  # every run reports at least the root
