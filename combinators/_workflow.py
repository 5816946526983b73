"""Workflows: DAGs of named agents, built immutably and run in one nursery.

Building
    :class:`Workflow` is an immutable builder.  ``wf.add(name, agent,
    after=...)`` returns a *new* workflow together with a typed handle
    :class:`Node` ``[Out]`` for the node just added.  What a node's agent
    receives is decided by ``after``:

    * no ``after``: the workflow's own input;
    * ``after=h`` (one handle): the output of ``h``;
    * ``after=(h1, h2, ...)``: a tuple of those outputs, in that order.

    mypy checks the agent's input type against the handles' output types, so
    a dependent that reads a node's output with the wrong type is an error in
    the user's code.  ``wf.depend(node, on=other)`` adds an ordering-only
    edge (no data) between names or handles that may not exist yet; this is
    the form that can build a cycle, and it is checked by :meth:`Workflow.build`.

    Additions are kept in a persistent linked list, so adding a node is O(1):
    the builders of one linear history share one name index (a node is "in"
    a builder when its position is below the builder's size).  Branching
    from an older builder copies the index once.  Duplicate names, empty
    names, unknown or foreign handles are refused by ``add`` at once;
    ordering edges are resolved, and cycles found, by ``build()`` with
    iterative algorithms (Kahn's toposort, then a walk that names the cycle).

Running
    ``build()`` gives an agent (a :class:`WorkflowNode`).  Its runner opens
    one trio nursery; a node's task is started the moment its last
    dependency succeeds (not level by level).  A failure marks every
    dependent ``skipped``; with ``on_failure="continue"`` independent
    branches keep going, with ``"cancel"`` the nursery's cancel scope is
    cancelled and whatever was running or waiting is ``cancelled``.  The
    result is ``Success(WorkflowResult)`` when every node succeeded, else
    ``Failure(WorkflowFailed)`` holding every node's outcome.

    Each node's agent is stored renamed to the node's name (``.named``), so
    the workflow's ``children()`` carry the node names and any tree walker
    that derives paths with ``segments(children)`` finds the same paths
    (``workflow/node/...``) as the runner.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Final, Generic, Literal, Never, TypeAlias, TypeVar, final, overload

import attrs
import trio
from returns.result import Failure, Result, Success

from ._cancel import keep_first_crash, open_nursery
from ._exceptions import AgentTypeError, BuildError, CycleError
from ._expr import Agent, _check_name, _require_agent
from ._plan import Compiler, Env, compiles, segments
from ._types import Runner

if TYPE_CHECKING:
    from ._mermaid import Block, MermaidGraph

_In = TypeVar("_In")
_WErr_co = TypeVar("_WErr_co", covariant=True)
_O = TypeVar("_O")
_E = TypeVar("_E")
_T = TypeVar("_T")
_A = TypeVar("_A")
_B = TypeVar("_B")
_C = TypeVar("_C")
_D = TypeVar("_D")
_F = TypeVar("_F")
_T_co = TypeVar("_T_co", covariant=True)
_E_co = TypeVar("_E_co", covariant=True)
_In_contra = TypeVar("_In_contra", contravariant=True)
_Out_co = TypeVar("_Out_co", covariant=True)
_Err_co = TypeVar("_Err_co", covariant=True)

OnFailure: TypeAlias = Literal["continue", "cancel"]
_POLICIES: Final = ("continue", "cancel")

# How a node's input is formed from its data dependencies.
_FROM_INPUT: Final = 0  # no `after`: the workflow's input
_FROM_ONE: Final = 1  # `after=h`: h's output
_FROM_TUPLE: Final = 2  # `after=(h1, ...)`: a tuple of outputs


# --------------------------------------------------------------------------
# Outcomes


@final
@attrs.frozen
class NodeSucceeded(Generic[_T_co]):
    """The node ran and succeeded with ``value``.

    >>> from combinators import Workflow, fail, pure, run_sync
    >>> wf, ok = Workflow.start(int).add("ok", pure(str))
    >>> wf, bad = wf.add("bad", fail("down"))
    >>> run_sync(wf.build(), 7).failure().outcome(ok)
    NodeSucceeded(value='7')
    """

    value: _T_co


@final
@attrs.frozen
class NodeFailed(Generic[_E_co]):
    """The node ran and failed with the error value ``error``.

    >>> from combinators import Workflow, fail, run_sync
    >>> wf, bad = Workflow.start(int).add("bad", fail("down"))
    >>> run_sync(wf.build(), 7).failure().outcome(bad)
    NodeFailed(error='down')
    """

    error: _E_co


@final
@attrs.frozen
class NodeSkipped:
    """The node never ran: its dependency ``because`` did not succeed.

    ``because`` is the direct dependency whose failure (or skip) reached this
    node first; follow the chain of ``because`` to find the failed node.

    >>> from combinators import Workflow, fail, pure, run_sync
    >>> wf, bad = Workflow.start(int).add("bad", fail("down"))
    >>> wf, after = wf.add("after", pure(str), after=bad)
    >>> run_sync(wf.build(), 7).failure().outcome(after)
    NodeSkipped(because='bad')
    """

    because: str


@final
@attrs.frozen
class NodeCancelled:
    """The workflow was cancelled (``on_failure="cancel"``) before this node finished.

    ``started`` tells whether it was running (True) or still waiting for its
    dependencies (False).

    >>> from combinators import Workflow, fail
    >>> from combinators.testing import fake, run_virtual
    >>> wf, bad = Workflow.start(int).add("bad", fail("down"))
    >>> wf, slow = wf.add("slow", fake("slow", delay=5))
    >>> result, elapsed = run_virtual(wf.build(on_failure="cancel"), 7)
    >>> result.failure().outcome(slow), elapsed
    (NodeCancelled(started=True), 0.0)
    """

    started: bool


NodeOutcome: TypeAlias = NodeSucceeded[object] | NodeFailed[_E] | NodeSkipped | NodeCancelled


@final
class Node(Generic[_T_co]):
    """A typed handle on one node of a workflow: its output has type ``T``.

    Handles are returned by :meth:`Workflow.add`; pass them as ``after=`` to
    later additions and use them to read a result (``result[handle]``).

    >>> from combinators import Workflow, pure, run_sync
    >>> wf, length = Workflow.start(str).add("length", pure(len))
    >>> length
    Node('length')
    >>> run_sync(wf.build(), "four").unwrap()[length]
    4
    """

    __slots__ = ("_link",)

    def __init__(self, link: _Link) -> None:
        self._link = link

    @property
    def name(self) -> str:
        """The node's name in its workflow."""
        return self._link.name

    def __repr__(self) -> str:
        return f"Node({self._link.name!r})"


def _key_name(key: Node[Any] | str, where: str) -> str:
    if isinstance(key, Node):
        return key.name
    if isinstance(key, str):
        return key
    msg = f"{where}: expected a Node handle or a node name, got {type(key).__name__} {key!r}"
    raise TypeError(msg)


@final
@attrs.frozen
class WorkflowResult:
    """Every node's output, by handle (typed) or by name.

    >>> from combinators import pure, run_sync
    >>> wf, a = Workflow.start(int).add("a", pure(lambda x: x + 1))
    >>> wf, b = wf.add("b", pure(str), after=a)
    >>> result = run_sync(wf.build(), 1).unwrap()
    >>> result[b]
    '2'
    >>> result["a"]
    2
    """

    items: tuple[tuple[str, object], ...]
    _index: dict[str, int] = attrs.field(init=False, eq=False, hash=False, repr=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_index", {name: i for i, (name, _) in enumerate(self.items)})

    @overload
    def __getitem__(self, key: Node[_T]) -> _T: ...
    @overload
    def __getitem__(self, key: str) -> object: ...
    def __getitem__(self, key: Node[Any] | str) -> object:
        name = _key_name(key, "WorkflowResult[...]")
        i = self._index.get(name)
        if i is None:
            msg = f"workflow result has no node {name!r}"
            raise KeyError(msg)
        return self.items[i][1]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, Node | str) and _key_name(key, "in") in self._index

    def __len__(self) -> int:
        return len(self.items)

    def names(self) -> Iterator[str]:
        """Node names in the order they were added."""
        return (name for name, _ in self.items)

    def as_dict(self) -> dict[str, object]:
        """``{name: output}`` for every node."""
        return dict(self.items)


@final
@attrs.frozen
class WorkflowFailed(Generic[_E_co]):
    """A workflow where some node did not succeed: every node's outcome, nothing lost.

    ``outcomes`` holds, for each node in the order added, a
    :class:`NodeSucceeded`, :class:`NodeFailed`, :class:`NodeSkipped` or
    :class:`NodeCancelled`.  ``first`` names the node whose failure came
    first in trio time.

    >>> from combinators import Workflow, fail, pure, run_sync
    >>> wf, ok = Workflow.start(int).add("ok", pure(str))
    >>> wf, bad = wf.add("bad", fail("down"))
    >>> failed = run_sync(wf.build(), 7).failure()
    >>> failed.first, failed.errors, failed.value(ok)
    ('bad', {'bad': 'down'}, '7')
    """

    items: tuple[tuple[str, NodeOutcome[_E_co]], ...]
    first: str
    _index: dict[str, int] = attrs.field(init=False, eq=False, hash=False, repr=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_index", {name: i for i, (name, _) in enumerate(self.items)})

    @property
    def outcomes(self) -> dict[str, NodeOutcome[_E_co]]:
        """``{name: outcome}`` for every node."""
        return dict(self.items)

    @property
    def errors(self) -> dict[str, _E_co]:
        """``{name: error}`` for the nodes that failed."""
        return {name: o.error for name, o in self.items if isinstance(o, NodeFailed)}

    @property
    def error(self) -> _E_co:
        """The error of the node that failed first."""
        outcome = self.outcome(self.first)
        assert isinstance(outcome, NodeFailed)
        return outcome.error

    def outcome(self, key: Node[Any] | str) -> NodeOutcome[_E_co]:
        """The outcome of one node."""
        name = _key_name(key, "WorkflowFailed.outcome()")
        i = self._index.get(name)
        if i is None:
            msg = f"workflow has no node {name!r}"
            raise KeyError(msg)
        return self.items[i][1]

    def value(self, key: Node[_T]) -> _T:
        """The output of a node that succeeded; ``LookupError`` if it did not."""
        outcome = self.outcome(key)
        if not isinstance(outcome, NodeSucceeded):
            msg = f"workflow node {key.name!r} did not succeed: {outcome!r}"
            raise LookupError(msg)
        return outcome.value  # type: ignore[return-value]  # the handle carries the type

    def __str__(self) -> str:
        bad = [f"{name}: {o!r}" for name, o in self.items if not isinstance(o, NodeSucceeded)]
        return f"workflow failed (first: {self.first!r}); " + ", ".join(bad)


# --------------------------------------------------------------------------
# The builder


@final
@attrs.frozen(eq=False)
class _Link:
    """One addition: a node, pointing at the previous addition."""

    prev: _Link | None
    index: int
    name: str
    agent: Agent[Any, Any, Any]
    deps: tuple[_Link, ...]
    shape: int


@final
@attrs.frozen(eq=False)
class _Edge:
    """One ``depend()`` call: ``node`` waits for ``on``; names or links."""

    prev: _Edge | None
    node: _Link | str
    on: _Link | str


class _Lineage:
    """The name index shared by the builders of one linear history.

    Only the builder at the tip (``size == length``) appends; a builder made
    from an older one copies the index first.  A name is in a builder of
    size ``n`` exactly when its link's index is below ``n``.
    """

    __slots__ = ("length", "names")

    def __init__(self) -> None:
        self.length = 0
        self.names: dict[str, _Link] = {}


def _links(tail: _Link | None) -> list[_Link]:
    out: list[_Link] = []
    while tail is not None:
        out.append(tail)
        tail = tail.prev
    out.reverse()
    return out


@final
class Workflow(Generic[_In, _WErr_co]):
    """An immutable builder of a DAG of named agents (see the module docs).

    ``_In`` is the workflow's input; ``_WErr_co`` the error type its nodes
    may fail with (declared with ``start(T, errors=E)``, else ``object``).
    Each ``add`` joins the node's error type in; mypy refuses a rebinding
    ``wf, h = wf.add(...)`` whose node fails with something undeclared.

    >>> from combinators import pure, run_sync
    >>> wf, fetch = Workflow.start(str).add("fetch", pure(len))
    >>> wf, double = wf.add("double", pure(lambda n: n * 2), after=fetch)
    >>> wf, both = wf.add("both", pure(lambda t: t[0] + t[1]), after=(fetch, double))
    >>> run_sync(wf.build(output=both), "abc")
    <Success: 9>
    """

    __slots__ = ("_edges", "_lineage", "_size", "_tail")

    def __init__(self) -> None:
        self._tail: _Link | None = None
        self._edges: _Edge | None = None
        self._size = 0
        self._lineage = _Lineage()

    @overload
    @staticmethod
    def start(input_type: type[_T], /) -> Workflow[_T, object]: ...
    @overload
    @staticmethod
    def start(input_type: type[_T], /, errors: type[_E]) -> Workflow[_T, _E]: ...
    @staticmethod
    def start(input_type: type[Any], /, errors: type[Any] = object) -> Workflow[Any, Any]:
        """An empty workflow whose input has type ``input_type``.

        ``errors`` declares the error type its nodes may fail with (every
        node's agent must fit it); the default, ``object``, accepts any
        node.  Declaring it keeps ``WorkflowFailed[errors]`` precise.  For
        types that are not classes (unions, ``tuple[int, str]``) spell the
        builder out: ``Workflow[tuple[int, str], A | B]()``.
        """
        return Workflow()

    def _evolve(self, tail: _Link | None, edges: _Edge | None, size: int, lineage: _Lineage) -> Workflow[Any, Any]:
        new: Workflow[Any, Any] = Workflow()
        new._tail, new._edges, new._size, new._lineage = tail, edges, size, lineage
        return new

    def __len__(self) -> int:
        return self._size

    def __repr__(self) -> str:
        return f"<Workflow of {self._size} nodes>"

    def __contains__(self, key: object) -> bool:
        if isinstance(key, Node):
            return self._owns(key._link)
        if isinstance(key, str):
            link = self._lineage.names.get(key)
            return link is not None and link.index < self._size
        return False

    # `Never` parameters make these a mypy error too, not only a runtime one.
    def __rshift__(self, other: Never) -> Never:
        _not_an_agent()

    def __rrshift__(self, other: Never) -> Never:
        _not_an_agent()

    def __or__(self, other: Never) -> Never:
        _not_an_agent()

    def __ror__(self, other: Never) -> Never:
        _not_an_agent()

    def _owns(self, link: _Link) -> bool:
        found = self._lineage.names.get(link.name)
        return found is link and link.index < self._size

    # -- adding nodes -------------------------------------------------------

    @overload
    def add(
        self, name: str, agent: Agent[_In, _O, _E], *, after: None = None
    ) -> tuple[Workflow[_In, _WErr_co | _E], Node[_O]]: ...
    @overload
    def add(
        self, name: str, agent: Agent[_A, _O, _E], *, after: Node[_A]
    ) -> tuple[Workflow[_In, _WErr_co | _E], Node[_O]]: ...
    @overload
    def add(
        self, name: str, agent: Agent[tuple[_A, _B], _O, _E], *, after: tuple[Node[_A], Node[_B]]
    ) -> tuple[Workflow[_In, _WErr_co | _E], Node[_O]]: ...
    @overload
    def add(
        self,
        name: str,
        agent: Agent[tuple[_A, _B, _C], _O, _E],
        *,
        after: tuple[Node[_A], Node[_B], Node[_C]],
    ) -> tuple[Workflow[_In, _WErr_co | _E], Node[_O]]: ...
    @overload
    def add(
        self,
        name: str,
        agent: Agent[tuple[_A, _B, _C, _D], _O, _E],
        *,
        after: tuple[Node[_A], Node[_B], Node[_C], Node[_D]],
    ) -> tuple[Workflow[_In, _WErr_co | _E], Node[_O]]: ...
    @overload
    def add(
        self,
        name: str,
        agent: Agent[tuple[_A, _B, _C, _D, _F], _O, _E],
        *,
        after: tuple[Node[_A], Node[_B], Node[_C], Node[_D], Node[_F]],
    ) -> tuple[Workflow[_In, _WErr_co | _E], Node[_O]]: ...
    @overload
    def add(
        self, name: str, agent: Agent[tuple[_A, ...], _O, _E], *, after: Sequence[Node[_A]]
    ) -> tuple[Workflow[_In, _WErr_co | _E], Node[_O]]: ...
    def add(
        self, name: str, agent: Agent[Any, Any, Any], *, after: Node[Any] | Sequence[Node[Any]] | None = None
    ) -> tuple[Workflow[Any, Any], Node[Any]]:
        """Add node ``name`` running ``agent``; give the new workflow and the node's handle.

        The agent's input is the workflow's input (no ``after``), one
        node's output (``after=h``) or a tuple of outputs (``after=(h1, h2)``).
        The node starts as soon as every node in ``after`` (and every node
        it was made to ``depend`` on) has succeeded.
        """
        where = f"workflow node {name!r}" if isinstance(name, str) else "Workflow.add()"
        _check_name(name, where)
        if isinstance(agent, Workflow):
            msg = f"{where}: got a Workflow builder; nest it with .build(), e.g. add({name!r}, inner.build())"
            raise AgentTypeError(msg)
        _require_agent(agent, f"{where}: the agent", None)
        lineage = self._lineage
        existing = lineage.names.get(name)
        if existing is not None and existing.index < self._size:
            msg = f"{where}: duplicate name, the workflow already has a node called {name!r}"
            raise BuildError(msg)
        deps: tuple[_Link, ...]
        if after is None:
            deps, shape = (), _FROM_INPUT
        elif isinstance(after, Node):
            deps, shape = (after._link,), _FROM_ONE
        elif isinstance(after, Sequence) and not isinstance(after, str):
            items = tuple(after)
            for item in items:
                if not isinstance(item, Node):
                    msg = (
                        f"{where}: after= must hold Node handles returned by Workflow.add(), "
                        f"got {type(item).__name__} {item!r}; use depend() to order by name"
                    )
                    raise AgentTypeError(msg)
            deps, shape = tuple(h._link for h in items), _FROM_TUPLE
        else:
            msg = (
                f"{where}: after= must be a Node handle or a tuple of them, got "
                f"{type(after).__name__} {after!r}; use depend() to order by name"
            )
            raise AgentTypeError(msg)
        for dep in deps:
            if not self._owns(dep):
                msg = (
                    f"{where}: unknown dependency {dep.name!r}: that handle does not belong "
                    f"to this workflow (was it returned by add() on another workflow?)"
                )
                raise BuildError(msg)
        if lineage.length != self._size:
            # Building on from an older builder: the shared index belongs to
            # a longer history, so start a fresh one (a one-off O(n) copy).
            lineage = _Lineage()
            for link in _links(self._tail):
                lineage.names[link.name] = link
            lineage.length = self._size
        # The node's agent carries the node's name, so generic tree walkers
        # (paths from ``segments(children)``, drawings, journals) agree with
        # the runner: node ``name`` of workflow ``w`` is ``w/name``.
        if agent.name != name:
            agent = agent.named(name)
        link = _Link(self._tail, self._size, name, agent, deps, shape)
        lineage.names[name] = link
        lineage.length += 1
        return self._evolve(link, self._edges, self._size + 1, lineage), Node(link)

    def depend(
        self, node: Node[Any] | str, *, on: Node[Any] | str | Sequence[Node[Any] | str]
    ) -> Workflow[_In, _WErr_co]:
        """Make ``node`` wait for ``on`` (one or several nodes) to succeed, without data.

        Names may refer to nodes added later: they are resolved, and cycles
        found, by :meth:`build`.  Like the reference design's
        ``add_dependency(node, depends_on)``.
        """
        where = "Workflow.depend()"
        ons = tuple(on) if isinstance(on, Sequence) and not isinstance(on, str) else (on,)
        target = self._edge_end(node, where)
        edges = self._edges
        for one in ons:
            edges = _Edge(edges, target, self._edge_end(one, where))
        return self._evolve(self._tail, edges, self._size, self._lineage)

    def _edge_end(self, key: Node[Any] | str, where: str) -> _Link | str:
        if isinstance(key, Node):
            if not self._owns(key._link):
                msg = f"{where}: the handle for {key.name!r} does not belong to this workflow"
                raise BuildError(msg)
            return key._link
        if isinstance(key, str):
            return _check_name(key, where)
        msg = f"{where}: expected a Node handle or a node name, got {type(key).__name__} {key!r}"
        raise AgentTypeError(msg)

    # -- finalising ---------------------------------------------------------

    @overload
    def build(
        self, *, on_failure: OnFailure = "continue", output: None = None
    ) -> Agent[_In, WorkflowResult, WorkflowFailed[_WErr_co]]: ...
    @overload
    def build(
        self, *, on_failure: OnFailure = "continue", output: Node[_O]
    ) -> Agent[_In, _O, WorkflowFailed[_WErr_co]]: ...
    def build(
        self, *, on_failure: OnFailure = "continue", output: Node[Any] | None = None
    ) -> Agent[Any, Any, Any]:
        """Check the whole graph and give the workflow as an agent.

        Refuses (``BuildError``) an ordering edge naming an unknown node and
        (``CycleError``) a cycle, naming every node of it in order.
        ``on_failure`` chooses what a failure does to independent branches:
        ``"continue"`` lets them finish, ``"cancel"`` cancels them.  With
        ``output=h`` the agent's success value is ``h``'s output instead of
        the whole :class:`WorkflowResult`.
        """
        if on_failure not in _POLICIES:
            msg = f"Workflow.build(): on_failure must be 'continue' or 'cancel', got {on_failure!r}"
            raise BuildError(msg)
        if output is not None:
            if not isinstance(output, Node):
                msg = f"Workflow.build(): output must be a Node handle, got {type(output).__name__} {output!r}"
                raise AgentTypeError(msg)
            if not self._owns(output._link):
                msg = f"Workflow.build(): output node {output.name!r} does not belong to this workflow"
                raise BuildError(msg)
        links = _links(self._tail)
        index = {link.name: link.index for link in links}
        data = tuple(tuple(d.index for d in link.deps) for link in links)
        # Distinct predecessors, data dependencies first, in the order given.
        preds = [list(dict.fromkeys(ds)) if len(ds) > 1 else list(ds) for ds in data]
        order_edges: list[_Edge] = []
        edge = self._edges
        while edge is not None:
            order_edges.append(edge)
            edge = edge.prev
        order_edges.reverse()
        extra: dict[int, dict[int, None]] = {}
        for edge in order_edges:
            i = _resolve(edge.node, index, edge, "node")
            extra.setdefault(i, dict.fromkeys(preds[i]))[_resolve(edge.on, index, edge, "on")] = None
        for i, merged in extra.items():
            preds[i] = list(merged)
        names = tuple(link.name for link in links)
        _check_acyclic(names, preds)
        return WorkflowNode(
            tuple(link.agent for link in links),
            names,
            data,
            tuple(link.shape for link in links),
            tuple(tuple(p) for p in preds),
            on_failure,
            None if output is None else output._link.index,
        )


def _not_an_agent() -> Never:
    msg = "a Workflow builder is not an agent yet: call .build() to compose or run it"
    raise TypeError(msg)


def _resolve(end: _Link | str, index: dict[str, int], edge: _Edge, role: str) -> int:
    name = end.name if isinstance(end, _Link) else end
    i = index.get(name)
    if i is None:
        node = edge.node.name if isinstance(edge.node, _Link) else edge.node
        on = edge.on.name if isinstance(edge.on, _Link) else edge.on
        msg = (
            f"workflow: depend({node!r}, on={on!r}) names the unknown node {name!r}; "
            f"add a node called {name!r} or fix the name"
        )
        raise BuildError(msg)
    return i


def _check_acyclic(names: tuple[str, ...], preds: list[list[int]]) -> None:
    """Raise ``CycleError`` naming one cycle, in data-flow order, if there is any.

    ``a -> b`` means ``b`` waits for ``a``; the cycle starts at its node
    that was added first.
    """
    n = len(names)
    succs: list[list[int]] = [[] for _ in range(n)]
    indegree = [len(p) for p in preds]
    for i, ps in enumerate(preds):
        for p in ps:
            succs[p].append(i)
    ready = [i for i in range(n) if indegree[i] == 0]
    done = 0
    while ready:
        i = ready.pop()
        done += 1
        for s in succs[i]:
            indegree[s] -= 1
            if indegree[s] == 0:
                ready.append(s)
    if done == n:
        return
    # Every node left has a predecessor that is also left: walk predecessors
    # until a node repeats; the stretch between the repeats is a cycle.
    start = next(i for i in range(n) if indegree[i] > 0)
    position: dict[int, int] = {}
    walk: list[int] = []
    i = start
    while i not in position:
        position[i] = len(walk)
        walk.append(i)
        i = next(p for p in preds[i] if indegree[p] > 0)
    loop = walk[position[i] :]
    loop.reverse()  # predecessors were followed: reverse to data-flow order
    first = loop.index(min(loop))  # start at the node added first: stable messages
    loop = loop[first:] + loop[:first]
    cycle = tuple(names[j] for j in loop) + (names[loop[0]],)
    raise CycleError(cycle)


# --------------------------------------------------------------------------
# The workflow as an agent


@final
@attrs.frozen(eq=False, repr=False)
class WorkflowNode(Agent[_In_contra, _Out_co, _Err_co]):
    """A built workflow: made by :meth:`Workflow.build`, run like any agent.

    Node ``i`` runs ``agents[i]`` (renamed to ``names[i]``); ``data[i]``
    are the nodes whose outputs form its input (``shapes[i]`` says how) and
    ``preds[i]`` every node it waits for.
    """

    agents: tuple[Agent[Any, Any, Any], ...]
    names: tuple[str, ...]
    data: tuple[tuple[int, ...], ...]
    shapes: tuple[int, ...]
    preds: tuple[tuple[int, ...], ...]
    on_failure: str
    output: int | None
    kind: ClassVar[str] = "workflow"

    def _mermaid(self, graph: MermaidGraph) -> Block:
        """A box titled with the workflow's name; an arrow per dependency.

        Data dependencies are solid arrows, ``depend()`` orderings dotted.
        """
        from ._mermaid import Block

        title = self.kind if self.name == self.kind else f"{self.kind}: {self.name}"
        with graph.subgraph(title):
            blocks: list[Block] = []
            for kid in self.agents:
                blocks.append(graph.draw(kid))
        has_succ = [False] * len(blocks)
        for i, ps in enumerate(self.preds):
            data = set(self.data[i])
            for p in ps:
                has_succ[p] = True
                graph.link(blocks[p], blocks[i], style="solid" if p in data else "dotted")
        roots = [b for b, ps in zip(blocks, self.preds, strict=True) if not ps]
        sinks = [b for b, used in zip(blocks, has_succ, strict=True) if not used]
        if self.output is not None:
            sinks = [blocks[self.output]]
        return Block(
            tuple(e for b in roots for e in b.entries),
            tuple(e for b in sinks for e in b.exits),
        )


@compiles(WorkflowNode)
def _compile_workflow(c: Compiler, node: WorkflowNode[Any, Any, Any], env: Env) -> Runner:
    """One nursery; a node's task starts when its last dependency succeeds.

    A failure marks the failed node's dependents skipped (they never start);
    with ``on_failure="cancel"`` it also cancels the nursery's cancel scope.
    An unexpected exception from a node cancels the rest and propagates as
    itself, not inside an ExceptionGroup.
    """
    runners_: list[Runner] = []
    for a in node.agents:  # a loop: no frame of its own per level (MAX_DEPTH)
        runners_.append(c.compile(a, env))
    runners = tuple(runners_)
    names = node.names
    segs = segments(node.agents)  # "/name": every agent carries its node's name
    data, shapes, preds = node.data, node.shapes, node.preds
    n = len(names)
    succs_l: list[list[int]] = [[] for _ in range(n)]
    for i, ps in enumerate(preds):
        for p in ps:
            succs_l[p].append(i)
    succs = tuple(tuple(s) for s in succs_l)
    waits = tuple(len(p) for p in preds)
    roots = tuple(i for i in range(n) if not preds[i])
    cancel_on_failure = node.on_failure == "cancel"
    output = node.output

    async def run_workflow(x: Any, path: str) -> Result[Any, Any]:
        values: list[Any] = [None] * n
        outcomes: list[NodeOutcome[Any] | None] = [None] * n
        started = [False] * n
        pending = list(waits)
        first_failure: list[int] = []
        crash: list[BaseException] = []

        async with open_nursery() as nursery:
            scope = nursery.cancel_scope

            def skip_dependents(i: int) -> None:
                # Breadth first, in the order nodes were added: `because`
                # names the earliest-added dependency that did not succeed.
                queue = collections.deque([i])
                while queue:
                    j = queue.popleft()
                    for s in succs[j]:
                        if outcomes[s] is None:
                            outcomes[s] = NodeSkipped(names[j])
                            queue.append(s)

            async def one(i: int) -> None:
                # When a node's success makes others ready, the last of them
                # runs on in this task (a continuation) and only the rest get
                # new tasks: a chain of nodes costs no task per node.
                while True:
                    shape = shapes[i]
                    if shape == _FROM_INPUT:
                        arg = x
                    elif shape == _FROM_ONE:
                        arg = values[data[i][0]]
                    else:
                        arg = tuple(values[d] for d in data[i])
                    try:
                        result = await runners[i](arg, path + segs[i])
                    except Exception as exc:
                        keep_first_crash(crash, scope, exc)
                        return
                    if not isinstance(result, Success):
                        outcomes[i] = NodeFailed(result._inner_value)
                        if not first_failure:
                            first_failure.append(i)
                        skip_dependents(i)
                        if cancel_on_failure:
                            scope.cancel()
                        return
                    values[i] = result._inner_value
                    outcomes[i] = NodeSucceeded(result._inner_value)
                    if scope.cancel_called:
                        return
                    ready = []
                    for s in succs[i]:
                        pending[s] -= 1
                        if pending[s] == 0 and outcomes[s] is None:
                            started[s] = True
                            ready.append(s)
                    if not ready:
                        return
                    for s in ready[:-1]:
                        nursery.start_soon(one, s)
                    i = ready[-1]

            for i in roots:
                started[i] = True
                nursery.start_soon(one, i)
        if crash:
            raise crash[0]
        if not first_failure:
            if output is not None:
                return Success(values[output])
            return Success(WorkflowResult(tuple(zip(names, values, strict=True))))
        items = tuple(
            (names[i], o if o is not None else NodeCancelled(started[i]))
            for i, o in enumerate(outcomes)
        )
        return Failure(WorkflowFailed(items, names[first_failure[0]]))

    return run_workflow
