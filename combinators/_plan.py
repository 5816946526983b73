"""Compiling a tree into runners: the registry every node kind plugs into.

A *runner* is ``async (x, path) -> Result``: the compiled form of one node
at one place in the tree, given its input and its own node path; the
runners of a tree are its *plan*.  Each node kind is compiled by the
function registered for its class with :func:`compiles`.

Compile-time context that flows down the tree (limiters in force, priority,
rate windows) is an :class:`Env`; whether the run is observed and extra
leaf layers (a journal) live on the :class:`Compiler`.  A plan that holds no
state of its own run (no limiter, rate window or compile at run time: :attr:`Compiler.per_run` stays false) is kept and
reused for every later run of the same tree.  A limiter or window the user
shares (``.limit(limiter)``) is not state of one run: it leaves the plan
reusable.

A leaf whose function must run on asyncio (``aio.agent``) sets
:attr:`Compiler.host_leaves`: ``compile_tree`` then makes the run find an
asyncio loop at its start (``_aio_leaf.needs_host``).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

import attrs

from ._expr import Agent, Leaf, Priority
from ._expr import segments as segments  # the rules name their children's paths with it
from ._types import Runner

if TYPE_CHECKING:
    from ._limits import Admission, SharedWindow, StartWindow
    from ._budget import Budget

_N = TypeVar("_N", bound=Agent[Any, Any, Any])

CompileFn = Callable[["Compiler", Any, "Env"], Runner]
#: Wraps a compiled leaf runner (journal, executors): (compiler, leaf, env, runner) -> runner.
LeafLayer = Callable[["Compiler", Leaf[Any, Any, Any], "Env", Runner], Runner]

_REGISTRY: dict[type[Any], CompileFn] = {}
#: The leaf layer for a leaf that carries a policy of each type (a cache's
#: ``CachePolicy`` in ``Leaf.cached``), registered by what provides it.
_LEAF_POLICIES: dict[type[Any], LeafLayer] = {}


def compiles(kind: type[_N]) -> Callable[[Callable[[Compiler, _N, Env], Runner]], Callable[[Compiler, _N, Env], Runner]]:
    """Register the compile function for a node class."""

    def register(fn: Callable[[Compiler, _N, Env], Runner]) -> Callable[[Compiler, _N, Env], Runner]:
        _REGISTRY[kind] = fn
        return fn

    return register


def wraps_leaves(policy: type[Any]) -> Callable[[LeafLayer], LeafLayer]:
    """Register the leaf layer that runs a leaf carrying a ``policy`` (``_cache.cache_layer``)."""

    def register(layer: LeafLayer) -> LeafLayer:
        _LEAF_POLICIES[policy] = layer
        return layer

    return register


def policy_layer(policy: object) -> LeafLayer:
    """The leaf layer registered for ``policy``'s type (see :func:`wraps_leaves`)."""
    layer = _LEAF_POLICIES.get(type(policy))
    if layer is None:
        msg = f"no leaf layer for {type(policy).__name__}: import the module that provides it"
        raise TypeError(msg)
    return layer


@runtime_checkable
class Journal(Protocol):
    """What ``run(journal=...)`` is given: the interpreter's view of a journal.

    Named like the public ``combinators.Journal`` (the base class every
    backend implements, which satisfies this protocol) because to a user of
    ``run`` they are one thing, and type errors should say so.

    For one run of ``tree`` under ``run_id`` it opens a session (refusing a
    tree unlike the one recorded under that id) and gives the leaf layer
    that answers recorded leaves and records the others; the session ends
    when the run does.  The interpreter knows nothing more of journals.
    """

    def _open_run(self, tree: Agent[Any, Any, Any], run_id: str) -> AbstractAsyncContextManager[LeafLayer]: ...


@attrs.frozen
class Env:
    """What a node inherits from its ancestors at compile time."""

    #: Per-run limiters and views of shared ones (``.limit(limiter)``), outermost first.
    limiters: tuple[Admission, ...] = ()
    priority: Priority = Priority.NORMAL
    windows: tuple[tuple[StartWindow | SharedWindow, Callable[[Any], float] | None], ...] = ()
    #: Where leaf functions run (None: in the trio task); set by ``.on()``.
    executor: Any = None
    #: Spend budgets above (outermost first); set by ``.budget()`` and ``run(budget=)``.
    budgets: tuple[Budget, ...] = ()

    @property
    def innermost_capacity(self) -> int | None:
        """The smallest capacity in force, which bounds useful fan-out width."""
        if not self.limiters:
            return None
        return min(lim.total for lim in self.limiters)


class Compiler:
    """Compiles the nodes of a tree into a plan; memoises by (node identity, env).

    ``observed`` plans emit events to the run's observer (``SINK`` in
    ``_observe``), which they look up as they run rather than hold.  A rule
    that puts state belonging to one run into its runner sets ``per_run``:
    such a plan is compiled afresh for every run.
    """

    def __init__(
        self,
        *,
        observed: bool = False,
        leaf_layers: tuple[LeafLayer, ...] = (),
    ) -> None:
        self.observed = observed
        self.leaf_layers = leaf_layers
        self.per_run = bool(leaf_layers)
        #: Whether a leaf of this plan runs its coroutine on asyncio.
        self.host_leaves = False
        self._memo: dict[tuple[int, Env], tuple[Agent[Any, Any, Any], Runner]] = {}

    def compile(self, node: Agent[Any, Any, Any], env: Env) -> Runner:
        """The runner for ``node`` under ``env``."""
        key = (id(node), env)
        hit = self._memo.get(key)
        if hit is not None:
            return hit[1]
        fn = _REGISTRY.get(type(node))
        if fn is None:
            msg = f"no interpreter rule for node kind {type(node).__name__} ({node.name!r})"
            raise TypeError(msg)
        runner = fn(self, node, env)
        if self.observed and not getattr(runner, "_observed", False):
            from ._observe import observed

            runner = observed(node, runner)
        # Keep the node alive so its id() is not reused within this run.
        self._memo[key] = (node, runner)
        return runner


def bare_leaf(c: Compiler, node: Agent[Any, Any, Any], env: Env) -> Leaf[Any, Any, Any] | None:
    """``node`` if it is a leaf with nothing around it but at most one limiter, else None.

    Nothing else: no events, leaf layers (a journal), executor, rate window,
    budget, declared cost or cache.  Such a leaf may be called inline by the
    fast variants of the leaf call — ``_run``'s limited agent leaf, the
    chain's inline steps, ``each``'s workers — which is what
    ``benchmarks/each.py`` and ``benchmarks/chain.py`` measure; everything
    else goes through the general leaf rule.
    """
    if type(node) is not Leaf or c.observed or c.leaf_layers:
        return None
    if env.executor is not None or env.windows or len(env.limiters) > 1 or env.budgets:
        return None
    if node.spend is not None or node.cached is not None:
        return None
    return node


