"""The algebra a user relies on when refactoring a pipeline (docs/laws.md).

Each law says two trees are equivalent: run on the same input under
``MockClock(autojump_threshold=0)``, they give the same result *and* take
the same virtual time.  Every law is checked over the one tree strategy
users get too, :func:`combinators.testing.agent_trees`.

Fail-fast groups may report either of two failures that happen at the same
instant (DESIGN §3), so where a law involves ``|`` and both sides fail, it
asks only that both fail with an error one of the leaves can give.
"""

from __future__ import annotations

import re
from typing import Any

import attrs

from hypothesis import given, settings
from hypothesis import strategies as st
from returns.result import Failure, Result, Success

from combinators import Agent, Parallel, TimedOut, fail, pure, succeed
from combinators.testing import agent_trees, run_virtual

trees = agent_trees(max_leaves=6)
inputs = st.integers(1, 3)
#: Plain functions for the mapping laws: fusing them must not matter.
functions = st.sampled_from([lambda v: v, lambda v: (v, v), lambda v: repr(v), lambda v: [v]])


def where_free(value: Any) -> Any:
    """``value`` with the node path of every ``TimedOut`` in it blanked.

    Equivalent trees differ in shape, so the path of the node that reports
    a timeout differs too (docs/laws.md, "What does not hold"); a
    ``recover`` can carry that error into a success value.
    """
    match value:
        case Success(inner):
            return Success(where_free(inner))
        case Failure(inner):
            return Failure(where_free(inner))
        case TimedOut():
            return attrs.evolve(value, path="")
        case tuple() | list():
            return type(value)(where_free(v) for v in value)
    return value


def same(left: Agent[Any, Any, Any], right: Agent[Any, Any, Any], x: object, y: object = None) -> None:
    """Equal results (up to paths) and equal virtual time.

    Fail-fast groups may report either of two failures of the same instant,
    and trio's scheduler decides which (a ``recover`` above turns that into
    a success that varies too), so results are compared exactly only when
    they agree; otherwise up to which leaf's error it was (:func:`shape`).
    ``right`` runs on ``y`` when given, else on ``x``.
    """
    y = x if y is None else y
    lr, lt = run_virtual(left, x)
    rr, rt = run_virtual(right, y)
    assert lt == rt
    if where_free(lr) == where_free(rr):
        return
    # Which of several simultaneous failures is reported depends on trio's
    # scheduling, and one group deeper a failure surfaces a step later: the
    # sides must then agree on everything but *which* leaf's error it was.
    assert shape(lr) == shape(rr)


def shape(value: Any) -> Any:
    """``value`` with every leaf's error (its name, ``leafN``) made the same, paths blanked."""
    match value:
        case Success(inner):
            return Success(shape(inner))
        case Failure(inner):
            return Failure(shape(inner))
        case TimedOut():
            return attrs.evolve(value, path="")
        case str():
            return re.sub(r"leaf\d+", "leaf", value)
        case tuple() | list():
            return type(value)(shape(v) for v in value)
    return value


def one_value(tree: Agent[Any, Any, Any]) -> Agent[Any, Any, Any]:
    """``tree``, or a group as one operand (``transform`` stops the flattening)."""
    return tree.transform(lambda v: v) if isinstance(tree, Parallel) else tree


def flatten_right(value: tuple[Any, tuple[Any, Any]]) -> tuple[Any, Any, Any]:
    a, (b, c) = value
    return a, b, c


def flatten_left(value: tuple[tuple[Any, Any], Any]) -> tuple[Any, Any, Any]:
    (a, b), c = value
    return a, b, c


@settings(max_examples=60, deadline=None)
@given(trees, trees, trees, inputs)
def test_then_is_associative(a: Agent[Any, Any, Any], b: Agent[Any, Any, Any], c: Agent[Any, Any, Any], x: int) -> None:
    same((a >> b) >> c, a >> (b >> c), x)


@settings(max_examples=60, deadline=None)
@given(trees, inputs)
def test_pure_identity_is_the_unit_of_then(a: Agent[Any, Any, Any], x: int) -> None:
    unit: Agent[Any, Any, Any] = pure(lambda v: v)
    same(unit >> a, a, x)
    same(a >> unit, a, x)


@settings(max_examples=60, deadline=None)
@given(trees, trees, trees, inputs)
def test_parallel_is_associative_up_to_flattening(
    a: Agent[Any, Any, Any], b: Agent[Any, Any, Any], c: Agent[Any, Any, Any], x: int
) -> None:
    # The law is about three operands; an operand that is itself a group
    # would flatten into its neighbours, so make each one value.
    a, b, c = (one_value(t) for t in (a, b, c))
    flat = a | b | c
    # A group on the left flattens by itself: (a | b) | c is a | b | c.
    same((a | b) | c, flat, x)
    # A group on the right stays one value: flatten it to compare.
    same((a | (b | c)).transform(flatten_right), flat, x)


@settings(max_examples=60, deadline=None)
@given(trees, trees, trees, inputs)
def test_fallback_is_associative(
    a: Agent[Any, Any, Any], b: Agent[Any, Any, Any], c: Agent[Any, Any, Any], x: int
) -> None:
    same(a.fallback(b).fallback(c), a.fallback(b.fallback(c)), x)


@settings(max_examples=60, deadline=None)
@given(trees, inputs, st.text(max_size=3))
def test_fail_is_the_left_unit_of_fallback(a: Agent[Any, Any, Any], x: int, e: str) -> None:
    same(fail(e).fallback(a), a, x)
    # On the right, fail(e) is not a unit: it replaces a's error with e.
    same(a.fallback(fail(e)), a.map_error(lambda _: e), x)


@settings(max_examples=60, deadline=None)
@given(trees, functions, functions, inputs)
def test_transform_fuses(a: Agent[Any, Any, Any], f: Any, g: Any, x: int) -> None:
    same(a.transform(f).transform(g), a.transform(lambda v: g(f(v))), x)


@settings(max_examples=60, deadline=None)
@given(trees, functions, functions, inputs)
def test_map_error_fuses(a: Agent[Any, Any, Any], f: Any, g: Any, x: int) -> None:
    same(a.map_error(f).map_error(g), a.map_error(lambda e: g(f(e))), x)


@settings(max_examples=60, deadline=None)
@given(trees, inputs)
def test_transform_identity_and_recover_laws(a: Agent[Any, Any, Any], x: int) -> None:
    same(a.transform(lambda v: v), a, x)
    same(a.map_error(lambda e: e), a, x)
    alone = run_virtual(a, x)
    # recover never fails; on success it is the identity.
    recovered, elapsed = run_virtual(a.recover(lambda e: ("recovered", e)), x)
    assert isinstance(recovered, Success)
    assert elapsed == alone[1]
    if isinstance(alone[0], Success):
        # Up to which of simultaneous failures a recover inside a reported.
        assert shape(recovered) == shape(alone[0])
    else:
        assert recovered.unwrap()[0] == "recovered"


@settings(max_examples=60, deadline=None)
@given(trees, inputs, st.integers(1, 3))
def test_succeed_then_f_is_f_on_the_value(a: Agent[Any, Any, Any], x: int, v: int) -> None:
    same(succeed(v) >> a, a, x, v)


@settings(max_examples=60, deadline=None)
@given(trees, inputs, st.text(max_size=3))
def test_fail_short_circuits_then(a: Agent[Any, Any, Any], x: int, e: str) -> None:
    assert run_virtual(fail(e) >> a, x) == (Failure(e), 0.0)
    assert run_virtual(fail(e).recover(lambda err: err), x) == (Success(e), 0.0)


@settings(max_examples=60, deadline=None)
@given(trees, inputs)
def test_retry_zero_is_identity(a: Agent[Any, Any, Any], x: int) -> None:
    same(a.retry(0), a, x)


@settings(max_examples=60, deadline=None)
@given(trees, inputs, st.sampled_from([0.5, 2.5, 6.5]), st.sampled_from([0.5, 2.5, 6.5]))
def test_nested_timeouts_take_the_shorter(a: Agent[Any, Any, Any], x: int, s: float, t: float) -> None:
    # Equal up to which timeout node reports it (its path).
    same(a.timeout(s).timeout(t), a.timeout(min(s, t)), x)


@settings(max_examples=40, deadline=None)
@given(trees, trees, inputs)
def test_sequence_into_a_group_is_not_a_group_of_sequences_in_calls(
    a: Agent[Any, Any, Any], b: Agent[Any, Any, Any], x: int
) -> None:
    """What does *not* hold: ``a >> (b | c)`` runs ``a`` once, ``(a >> b) | (a >> c)`` twice.

    With pure leaves the results and times agree (both branches start when
    ``a`` would have finished); the difference is in calls, which a counting
    leaf shows.
    """
    calls: list[int] = []

    def count(v: Any) -> Any:
        calls.append(1)
        return v

    counted = pure(count) >> a
    run_virtual(counted >> (b | b), x)
    once = len(calls)
    calls.clear()
    run_virtual((counted >> b) | (counted >> b), x)
    assert once == 1
    assert len(calls) == 2
