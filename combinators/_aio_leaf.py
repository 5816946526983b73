"""Leaves whose coroutine runs on asyncio (``aio.agent``/``aio.lift``), seen from trio.

An asyncio leaf is an ordinary :class:`~combinators._expr.Leaf` whose
function is a :class:`HostCall`: a trio-side async function that hands the
user's coroutine to an asyncio loop and waits for it, so every leaf rule
(limits, rate windows, retries, timeouts, the journal, events) applies
unchanged.  Which loop is a *bridge*, found in a context variable the run
sets at its start:

* under ``aio.run``, the host loop the trio guest run lives on
  (``_aio.GuestBridge``);
* under plain ``run``/``run_sync`` there is none (the command line runs
  such trees through ``aio.run`` itself, :func:`has_asyncio_leaves`): the run
  fails at its start (:func:`needs_host`) with a message saying to use
  ``aio.run``.  trio-asyncio could give one, but importing it replaces
  asyncio's event loop policy for the whole process (docs/decisions.md).

The wait is the one rule of the bridge: when the trio side is cancelled (a
``.timeout()``, a fail-fast sibling, a cancelled caller) the asyncio task is
cancelled and waited for, shielded, so its ``finally`` has run before the
cancellation goes on — no asyncio task outlives its leaf.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, Protocol

from ._expr import Agent, Leaf
from ._types import Runner

class Bridge(Protocol):
    """Runs one coroutine on an asyncio loop and waits for it, from a trio task."""

    async def call(self, fn: Callable[[Any], Awaitable[Any]], x: Any, name: str) -> Any: ...


#: The bridge of the current run (None: no asyncio loop yet).
BRIDGE: ContextVar[Bridge | None] = ContextVar("combinators_asyncio_bridge", default=None)


class HostCall:
    """The trio-side function of an asyncio leaf: ``await host_call(x)`` runs ``fn(x)`` on asyncio.

    Carries ``fn``'s name, annotations and ``__wrapped__`` so that default
    names, the journal's declared types and the command line's input type
    read through it.  Equal when the functions are, like two ``agent(f)``.
    """

    __name__: str

    def __init__(self, fn: Callable[[Any], Awaitable[Any]]) -> None:
        self.fn = fn
        functools.update_wrapper(self, fn)

    async def __call__(self, x: Any) -> Any:
        bridge = BRIDGE.get()
        if bridge is None:
            raise no_host(f"the asyncio leaf {self.__name__!r}")
        return await bridge.call(self.fn, x, getattr(self.fn, "__name__", "leaf"))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HostCall) and other.fn == self.fn

    def __hash__(self) -> int:
        return hash((HostCall, self.fn))

    def __repr__(self) -> str:
        return f"<asyncio leaf function {getattr(self.fn, '__qualname__', self.fn)!r}>"


def is_host_call(fn: object) -> bool:
    """Whether a leaf function runs on asyncio (also through ``versioned``'s wrapper)."""
    return isinstance(fn, HostCall) or isinstance(getattr(fn, "fn", None), HostCall)


def has_asyncio_leaves(tree: Agent[Any, Any, Any]) -> bool:
    """Whether ``tree`` holds a leaf that runs on asyncio (those ``bind`` picks at run time aside)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, Leaf) and is_host_call(node.fn):
            return True
        stack.extend(node.children())
    return False


def no_host(subject: str) -> RuntimeError:
    """The error for an asyncio leaf with no loop to run on; ``subject`` says which."""
    msg = (
        f"{subject} needs an asyncio loop to run on: run the tree with "
        f"`await combinators.aio.run(agent, x)` from asyncio code (from a script: "
        f"`asyncio.run(combinators.aio.run(agent, x))` instead of run_sync); plain run()/run_sync() "
        f"have no asyncio loop (docs/asyncio.md)"
    )
    return RuntimeError(msg)


def needs_host(plan: Runner) -> Runner:
    """``plan`` behind a check, at the start of each run, that an asyncio loop is there for its asyncio leaves.

    Under ``aio.run`` the host loop is; under plain ``run``/``run_sync`` the
    run fails at once, before any leaf has started, rather than at the first
    asyncio leaf (docs/asyncio.md says why there is no trio-asyncio mode).
    """

    async def run_with_host(x: Any, path: str) -> Any:
        if BRIDGE.get() is None:
            raise no_host(f"the tree {path!r} has asyncio leaves (aio.agent, aio.lift) and")
        return await plan(x, path)

    return run_with_host
