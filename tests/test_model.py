"""The interpreter against a plain reference evaluator, on generated trees.

Trees of fake leaves (fixed durations in trio time, fixed success or
failure) are combined with ``>>``, ``|``, ``transform``, ``map_error``,
``fallback``, ``recover``, ``timeout``, ``retry`` and ``limit(1)``.  Each is
run under ``MockClock(autojump_threshold=0)``; the result and the elapsed
trio time must equal what the reference gives (DESIGN §6, exactly).

The reference returns a *set* of acceptable results, because failures at
the same instant may be reported in either order (DESIGN §3).
"""

from __future__ import annotations

import itertools
from typing import Any

import attrs
import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from returns.result import Failure, Result, Success

from combinators import Agent, Backoff, TimedOut, agent
from combinators.testing import run_virtual

Outcome = tuple[str, Any]  # ("ok", value) or ("err", error)


@attrs.frozen
class L:
    id: int
    delay: int
    ok: bool


@attrs.frozen
class Seq:
    a: Any
    b: Any


@attrs.frozen
class Par:
    ops: tuple[Any, ...]


@attrs.frozen
class Tr:
    a: Any


@attrs.frozen
class MapErr:
    a: Any


@attrs.frozen
class Fb:
    a: Any
    b: Any


@attrs.frozen
class Rec:
    a: Any


@attrs.frozen
class To:
    a: Any
    seconds: float


@attrs.frozen
class Ret:
    a: Any
    times: int


@attrs.frozen
class Lim1:
    """limit(1) over a group of succeeding leaves: max becomes sum."""

    ops: tuple[L, ...]


BACKOFF = Backoff(base=1.0, factor=2.0, cap=4.0)

# -- building the real tree ------------------------------------------------------


def leaf_agent(spec: L) -> Agent[Any, Any, Any]:
    async def body(x: Any) -> Result[Any, Any]:
        await trio.sleep(spec.delay)
        return Success(("L", spec.id, x)) if spec.ok else Failure(("E", spec.id))

    body.__name__ = f"leaf{spec.id}"
    return agent(body)


def build(spec: Any) -> Agent[Any, Any, Any]:
    match spec:
        case L():
            return leaf_agent(spec)
        case Seq(a, b):
            return build(a) >> build(b)
        case Par(ops):
            group: Agent[Any, Any, Any] = build(ops[0]) | build(ops[1])
            for op in ops[2:]:
                group = group | build(op)
            return group
        case Tr(a):
            return build(a).transform(lambda v: ("T", v))
        case MapErr(a):
            return build(a).map_error(lambda e: ("M", e))
        case Fb(a, b):
            return build(a).fallback(build(b))
        case Rec(a):
            return build(a).recover(lambda e: ("R", e))
        case To(a, s):
            return build(a).timeout(s)
        case Ret(a, n):
            return build(a).retry(n, backoff=BACKOFF)
        case Lim1(ops):
            return build(Par(ops)).limit(1)
    raise AssertionError(spec)


# -- the reference evaluator -------------------------------------------------------


def ref(spec: Any, x: Any) -> tuple[float, set[Outcome]]:
    """(elapsed, acceptable outcomes) of ``spec`` on ``x``; plain recursion, no trio."""
    match spec:
        case L(id_, delay, ok):
            return float(delay), {("ok", ("L", id_, x)) if ok else ("err", ("E", id_))}
        case Seq(a, b):
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
        case Par(ops):
            while isinstance(ops[0], Par):  # a group on the left of | grows flat
                ops = ops[0].ops + ops[1:]
            evals = [ref(op, x) for op in ops]
            failing = [(t, r) for t, r in evals if _failed(r)]
            if failing:
                first = min(t for t, _ in failing)
                return first, set().union(*(r for t, r in failing if t == first))
            combos = itertools.product(*(sorted(r, key=repr) for _, r in evals))
            return max(t for t, _ in evals), {("ok", tuple(o[1] for o in c)) for c in combos}
        case Tr(a):
            ta, ra = ref(a, x)
            return ta, {("ok", ("T", v)) if k == "ok" else (k, v) for k, v in ra}
        case MapErr(a):
            ta, ra = ref(a, x)
            return ta, {("err", ("M", v)) if k == "err" else (k, v) for k, v in ra}
        case Fb(a, b):
            ta, ra = ref(a, x)
            if not _failed(ra):
                return ta, ra
            tb, rb = ref(b, x)
            return ta + tb, rb
        case Rec(a):
            ta, ra = ref(a, x)
            return ta, {("ok", ("R", v)) if k == "err" else (k, v) for k, v in ra}
        case To(a, s):
            ta, ra = ref(a, x)
            return (ta, ra) if ta < s else (s, {("err", ("TO", s))})
        case Ret(a, n):
            ta, ra = ref(a, x)
            if not _failed(ra):
                return ta, ra
            waits = sum(BACKOFF.delay(k) for k in range(1, n + 1))
            return ta * (n + 1) + waits, ra
        case Lim1(ops):
            evals = [ref(op, x) for op in ops]
            return sum(t for t, _ in evals), {("ok", tuple(next(iter(r))[1] for _, r in evals))}
    raise AssertionError(spec)


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


# -- generated trees -------------------------------------------------------------------

_ids = itertools.count()


@st.composite
def leaves(draw: st.DrawFn) -> L:
    return L(next(_ids), draw(st.integers(0, 5)), draw(st.booleans()))


def extend(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    half = st.sampled_from([0.5, 1.5, 2.5, 4.5, 7.5])
    ok_leaf = st.builds(lambda d: L(next(_ids), d, True), st.integers(0, 4))
    return st.one_of(
        st.builds(Seq, children, children),
        st.builds(lambda ops: Par(tuple(ops)), st.lists(children, min_size=2, max_size=4)),
        st.builds(Tr, children),
        st.builds(MapErr, children),
        st.builds(Fb, children, children),
        st.builds(Rec, children),
        st.builds(To, children, half),
        st.builds(Ret, children, st.integers(0, 3)),
        st.builds(lambda ops: Lim1(tuple(ops)), st.lists(ok_leaf, min_size=2, max_size=4)),
    )


trees = st.recursive(leaves(), extend, max_leaves=14)


@settings(max_examples=300, deadline=None)
@given(trees, st.integers(0, 100))
def test_interpreter_matches_reference(spec: Any, x: int) -> None:
    tree = build(spec)
    expected_time, expected = ref(spec, x)
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
def test_same_result_with_observer_and_run_limit(spec: Any, x: int) -> None:
    """Observing a run, or a generous run-wide limit, changes nothing."""
    from combinators import Recorder

    tree = build(spec)
    expected_time, expected = ref(spec, x)
    recorder = Recorder()
    result, elapsed = run_virtual(tree, x, observer=recorder, max_concurrency=1000)
    assert normalise(result) in expected
    assert elapsed == expected_time
    assert recorder.events  # every run reports at least the root


