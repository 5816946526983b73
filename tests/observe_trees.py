"""Random trees for the observability tests (events, report, trace, Mermaid).

The trees come from the one tree strategy,
:func:`combinators.testing.agent_trees` (``>>``, ``|`` groups of up to three,
``transform``, ``fallback``, ``timeout``, ``retry``), with leaves of our own:
each sleeps whole seconds of trio time and records, in the :class:`Clocks`
of the run in progress (:func:`recording`), the trio times at which each of
its runs started and ended (ended also when cancelled); its first ``fails``
runs fail, later runs succeed.  Leaf names are unique (``l0``, ``l1``...)
and the root is named ``root``, so a leaf's name identifies its node path.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import attrs
import trio
from hypothesis import strategies as st
from returns.result import Failure, Result, Success

from combinators import Agent, agent
from combinators._expr import Leaf
from combinators.testing import agent_trees


@attrs.define
class Clocks:
    """Per leaf name: (start, end) of every run, in trio time."""

    runs: dict[str, list[tuple[float, float]]] = attrs.Factory(dict)
    calls: dict[str, int] = attrs.Factory(dict)


#: The clocks of the run in progress (trio tasks inherit it from the caller of ``trio.run``).
_CLOCKS: ContextVar[Clocks] = ContextVar("observe_trees.clocks")


@contextmanager
def recording(clocks: Clocks) -> Iterator[Clocks]:
    """Leaves run inside this block record into ``clocks``."""
    token = _CLOCKS.set(clocks)
    try:
        yield clocks
    finally:
        _CLOCKS.reset(token)


@attrs.frozen
class Timed:
    """A leaf's function: sleep ``duration`` seconds; the first ``fails`` runs fail."""

    name: str
    duration: int
    fails: int

    async def __call__(self, x: Any) -> Result[int, str]:
        clocks = _CLOCKS.get()
        calls = clocks.calls.get(self.name, 0)
        clocks.calls[self.name] = calls + 1
        start = trio.current_time()
        try:
            await trio.sleep(self.duration)
        finally:
            clocks.runs.setdefault(self.name, []).append((start, trio.current_time()))
        if calls < self.fails:
            return Failure(f"{self.name} failed")
        return Success(_to_int(x) + 1)


def _to_int(value: Any) -> int:
    """Parallel groups give tuples: reduce them to an int for the next step."""
    if isinstance(value, tuple):
        return sum(_to_int(v) for v in value)
    assert isinstance(value, int)
    return value


def _leaf(timed: Timed) -> Agent[Any, int, str]:
    return agent(timed).named(timed.name)


def _rooted(tree: Agent[Any, Any, Any]) -> Agent[Any, Any, Any]:
    """The tree named ``root`` (a lone leaf records under that name too)."""
    match tree:
        case Leaf(fn=Timed() as timed):
            return _leaf(attrs.evolve(timed, name="root"))
    return tree.named("root")


def leaf_count(tree: Agent[Any, Any, Any]) -> int:
    """How many of our leaves ``tree`` holds."""
    return sum(1 for node in tree.walk() if isinstance(node, Leaf) and isinstance(node.fn, Timed))


_names = itertools.count()

leaves = st.builds(
    lambda duration, fails: _leaf(Timed(f"l{next(_names)}", duration, fails)),
    st.integers(0, 3),
    st.sampled_from([0, 0, 0, 1, 2, 9]),
)

trees: st.SearchStrategy[Agent[Any, Any, Any]] = agent_trees(
    max_leaves=16,
    leaves=leaves,
    kinds=("then", "parallel", "transform", "fallback", "timeout", "retry"),
    functions=st.just(_to_int),
    max_width=3,
).map(_rooted)


__all__ = ["Clocks", "Timed", "leaf_count", "recording", "trees"]
