"""Random trees for the observability tests (events, report, trace).

A tree is drawn as plain data (:class:`Spec`), then built into an agent
whose leaves sleep whole seconds of trio time and record, in a shared
:class:`Clocks`, the trio times at which each of their runs started and
ended (ended also when cancelled).  Leaf names are unique, so a leaf's name
identifies its node path.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import attrs
import trio
from hypothesis import strategies as st
from returns.result import Failure, Result, Success

from combinators import Agent, Backoff, agent


@attrs.frozen
class LeafSpec:
    duration: int
    #: The first ``fails`` runs fail, later runs succeed.
    fails: int


@attrs.frozen
class NodeSpec:
    op: str  # seq | par | fallback | timeout | retry
    children: tuple[Spec, ...]
    arg: float = 0.0


Spec = LeafSpec | NodeSpec


@attrs.define
class Clocks:
    """Per leaf name: (start, end) of every run, in trio time."""

    runs: dict[str, list[tuple[float, float]]] = attrs.Factory(dict)
    calls: dict[str, int] = attrs.Factory(dict)


leaves = st.builds(LeafSpec, st.integers(0, 3), st.sampled_from([0, 0, 0, 1, 2, 9]))


def _extend(children: st.SearchStrategy[Spec]) -> st.SearchStrategy[Spec]:
    many = st.lists(children, min_size=2, max_size=3).map(tuple)
    return st.one_of(
        st.builds(NodeSpec, st.just("seq"), many),
        st.builds(NodeSpec, st.just("par"), many),
        st.builds(NodeSpec, st.just("fallback"), st.tuples(children, children)),
        # Half seconds: a timeout never ties with a leaf's whole-second end.
        st.builds(NodeSpec, st.just("timeout"), st.tuples(children), st.integers(0, 6).map(lambda k: k + 0.5)),
        st.builds(NodeSpec, st.just("retry"), st.tuples(children), st.integers(0, 2).map(float)),
    )


trees: st.SearchStrategy[Spec] = st.recursive(leaves, _extend, max_leaves=8)


def build(spec: Spec, clocks: Clocks) -> Agent[int, Any, Any]:
    """The agent for ``spec``; its leaves record into ``clocks``."""
    if isinstance(spec, LeafSpec):
        return _leaf(spec, clocks, "root")
    return _build(spec, clocks, itertools.count()).named("root")


def _leaf(spec: LeafSpec, clocks: Clocks, name: str) -> Agent[int, Any, Any]:
    async def run_leaf(x: int) -> Result[int, str]:
        calls = clocks.calls.get(name, 0)
        clocks.calls[name] = calls + 1
        start = trio.current_time()
        try:
            await trio.sleep(spec.duration)
        finally:
            clocks.runs.setdefault(name, []).append((start, trio.current_time()))
        if calls < spec.fails:
            return Failure(f"{name} failed")
        return Success(x + 1)

    return agent(run_leaf).named(name)


def _build(spec: Spec, clocks: Clocks, counter: Iterator[int]) -> Agent[Any, Any, Any]:
    if isinstance(spec, LeafSpec):
        return _leaf(spec, clocks, f"l{next(counter)}")
    kids = [_build(c, clocks, counter) for c in spec.children]
    if spec.op == "seq":
        out = kids[0]
        for k in kids[1:]:
            # Parallel groups give tuples: reduce them to an int for the next step.
            out = out.transform(_to_int) >> k
        return out
    if spec.op == "par":
        group: Agent[Any, Any, Any] = kids[0] | kids[1]
        for k in kids[2:]:
            group = group | k
        return group
    if spec.op == "fallback":
        return kids[0].fallback(kids[1])
    if spec.op == "timeout":
        return kids[0].timeout(spec.arg)
    if spec.op == "retry":
        return kids[0].retry(int(spec.arg), backoff=Backoff(base=1, factor=1))
    raise AssertionError(spec.op)


def _to_int(value: Any) -> int:
    if isinstance(value, tuple):
        return sum(_to_int(v) for v in value)
    assert isinstance(value, int)
    return value


__all__ = ["Clocks", "LeafSpec", "NodeSpec", "Spec", "build", "trees"]
