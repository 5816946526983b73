"""Draw an expression tree as a Mermaid flowchart.

:func:`to_mermaid` reads the tree only (nothing runs).  Leaves are boxes,
``>>`` is an arrow, a parallel group is a box of side-by-side branches, a
fallback is a dotted ``on failure`` arrow, and the wrappers (``timeout``,
``retry``, ``limit``, ``priority``, ``rate``, a named sequence) are labelled
boxes (Mermaid *subgraphs*) around what they wrap.

Node kinds this module does not know are drawn generically from
``agent.kind``, ``agent.name`` and ``agent.children()``: a labelled box
around the children, side by side.  A node class draws itself instead by
defining a ``_mermaid(self, graph: MermaidGraph) -> Block`` method (see
:class:`MermaidDrawable`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any, Literal, Protocol, runtime_checkable

import attrs

from ._expr import (
    Agent,
    Bind,
    Const,
    Fallback,
    Leaf,
    Limit,
    MapError,
    Parallel,
    Prioritized,
    Rate,
    Recover,
    Retry,
    Then,
    Timeout,
    Transform,
)
from ._check import _fn_name
from ._control import Repeat, Switch, When
from ._workflow import WorkflowNode

Shape = Literal["box", "round", "stadium", "hexagon", "parallelogram", "circle", "diamond"]
EdgeStyle = Literal["solid", "dotted", "thick"]

_SHAPES: dict[str, tuple[str, str]] = {
    "box": ("[", "]"),
    "round": ("(", ")"),
    "stadium": ("([", "])"),
    "hexagon": ("{{", "}}"),
    "parallelogram": ("[/", "/]"),
    "circle": ("((", "))"),
    "diamond": ("{", "}"),
}


@attrs.frozen
class Block:
    """A drawn agent: the Mermaid ids its input flows into and its outcome leaves from.

    ``exits`` are where a success leaves (the next step of a ``>>`` is
    linked from them); ``failures`` are where a failure leaves (a
    ``fallback`` or ``recover`` is linked from them), the same as
    ``exits`` unless given.
    """

    entries: tuple[str, ...]
    exits: tuple[str, ...]
    failures: tuple[str, ...] | None = None

    @property
    def failure_exits(self) -> tuple[str, ...]:
        """Where a failure leaves this block."""
        return self.exits if self.failures is None else self.failures


@runtime_checkable
class MermaidDrawable(Protocol):
    """A node class that draws itself (the hook :func:`to_mermaid` looks for).

    ``_mermaid`` adds nodes, edges and subgraphs through ``graph`` (drawing
    its children with ``graph.draw(child)``) and returns the block's
    entries and exits, which the caller connects to its neighbours.
    """

    def _mermaid(self, graph: MermaidGraph) -> Block: ...


def _quote(text: str) -> str:
    """``text`` as a quoted Mermaid label.

    Quotes become ``#quot;`` and backticks ``#96;``: a label that starts
    with a backtick would otherwise be read as a Markdown string, which
    must also end with one, and the parser rejects the drawing.
    """
    return '"' + text.replace('"', "#quot;").replace("`", "#96;").replace("\n", " ") + '"'


class MermaidGraph:
    """The drawing being built; passed to ``_mermaid`` hooks."""

    def __init__(self, direction: str = "LR") -> None:
        self._lines: list[str] = [f"flowchart {direction}"]
        self._edges: list[str] = []
        self._depth = 1
        self._count = 0

    def _id(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}{self._count}"

    def node(self, text: str, shape: Shape = "box") -> str:
        """Add a node showing ``text``; returns its Mermaid id."""
        nid = self._id("n")
        left, right = _SHAPES[shape]
        self._lines.append("  " * self._depth + f"{nid}{left}{_quote(text)}{right}")
        return nid

    def edge(self, src: str, dst: str, label: str | None = None, style: EdgeStyle = "solid") -> None:
        """Add an arrow between two node ids."""
        arrow = {"solid": "-->", "dotted": "-.->", "thick": "==>"}[style]
        if label is None:
            self._edges.append(f"  {src} {arrow} {dst}")
        elif style == "dotted":
            self._edges.append(f"  {src} -. {_quote(label)} .-> {dst}")
        elif style == "thick":
            self._edges.append(f"  {src} == {_quote(label)} ==> {dst}")
        else:
            self._edges.append(f"  {src} -- {_quote(label)} --> {dst}")

    def link(
        self,
        src: Block,
        dst: Block,
        label: str | None = None,
        style: EdgeStyle = "solid",
        *,
        on_failure: bool = False,
    ) -> None:
        """Arrows from every exit (or failure exit) of ``src`` to every entry of ``dst``."""
        for a in src.failure_exits if on_failure else src.exits:
            for b in dst.entries:
                self.edge(a, b, label, style)

    @contextmanager
    def subgraph(self, title: str) -> Iterator[str]:
        """A labelled box; nodes added inside the ``with`` belong to it."""
        sid = self._id("s")
        self._lines.append("  " * self._depth + f"subgraph {sid}[{_quote(title)}]")
        self._depth += 1
        try:
            yield sid
        finally:
            self._depth -= 1
            self._lines.append("  " * self._depth + "end")

    def draw(self, agent: Agent[Any, Any, Any]) -> Block:
        """Draw ``agent`` (and everything below it); returns its block."""
        hook = getattr(type(agent), "_mermaid", None)
        if hook is not None:
            block: Block = hook(agent, self)
            return block
        for cls, rule in _RULES.items():
            if type(agent) is cls:
                return rule(self, agent)
        return _draw_generic(self, agent)

    def text(self) -> str:
        """The Mermaid source: node and subgraph declarations, then edges."""
        return "\n".join(self._lines + self._edges) + "\n"


def to_mermaid(agent: Agent[Any, Any, Any], *, direction: str = "LR") -> str:
    """A Mermaid ``flowchart`` of the tree under ``agent``.

    >>> from combinators import pure
    >>> print(to_mermaid(pure(abs) >> pure(str)), end="")
    flowchart LR
      n1["abs"]
      n2["str"]
      n1 --> n2
    """
    if not isinstance(agent, Agent):
        msg = f"to_mermaid() expects an Agent, got {type(agent).__name__} {agent!r}"
        raise TypeError(msg)
    if direction not in ("LR", "RL", "TB", "TD", "BT"):
        msg = f"to_mermaid(): direction must be LR, RL, TB, TD or BT, got {direction!r}"
        raise ValueError(msg)
    graph = MermaidGraph(direction)
    try:
        graph.draw(agent)
    except RecursionError:
        # Drawing recurses once per level where a ``>>`` chain alternates
        # with handlers or transforms; running such a tree loops (and the
        # builder counts it as one level), so only the picture is refused.
        msg = (
            f"to_mermaid(): {agent.name!r} nests too deeply to draw: a `>>` chain alternating with "
            f".transform/.map_error/.recover/.fallback draws one level per step "
            f"(it builds and runs fine); draw a part of it instead"
        )
        raise ValueError(msg) from None
    return graph.text()


# --------------------------------------------------------------------------
# Rules for the core node kinds


def _title(node: Agent[Any, Any, Any], what: str) -> str:
    return what if node.label is None else f"{node.label}: {what}"


def _draw_leaf(g: MermaidGraph, node: Agent[Any, Any, Any]) -> Block:
    nid = g.node(node.name, "stadium" if isinstance(node, Const) else "box")
    return Block((nid,), (nid,))


def _chain_steps(node: Then[Any, Any, Any]) -> list[Agent[Any, Any, Any]]:
    """The steps of a ``>>`` chain, left to right; named inner chains stay whole."""
    steps: list[Agent[Any, Any, Any]] = []
    stack: list[Agent[Any, Any, Any]] = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, Then) and (item is node or item.label is None):
            stack.append(item.second)
            stack.append(item.first)
        else:
            steps.append(item)
    return steps


# The rules below call ``g.draw`` directly from their own frame (no closure,
# no comprehension around it): drawing recurses once per level of nesting,
# and two frames per level is what ``MAX_DEPTH`` in ``_expr`` allows for.


def _draw_seq(g: MermaidGraph, node: Then[Any, Any, Any]) -> Block:
    with nullcontext() if node.label is None else g.subgraph(node.label):
        blocks: list[Block] = []
        for step in _chain_steps(node):
            blocks.append(g.draw(step))
            if len(blocks) > 1:
                g.link(blocks[-2], blocks[-1])
        failures = tuple(f for b in blocks for f in b.failure_exits)
        return Block(blocks[0].entries, blocks[-1].exits, failures)


def _draw_par(g: MermaidGraph, node: Parallel[Any, Any, Any, Any]) -> Block:
    with g.subgraph(node.label or "parallel"):
        blocks: list[Block] = []
        for op in node.operands:
            blocks.append(g.draw(op))
    return _side_by_side(blocks)


def _side_by_side(blocks: list[Block]) -> Block:
    return Block(
        tuple(e for b in blocks for e in b.entries),
        tuple(e for b in blocks for e in b.exits),
        tuple(e for b in blocks for e in b.failure_exits),
    )


_STEP_KINDS = (Transform, MapError, Recover, Fallback)


def _draw_steps(g: MermaidGraph, node: Any) -> Block:
    """A ``transform``/``map_error``/``recover``/``fallback`` and the unlabelled ones below it.

    Walked as a loop down the spine of wrapped agents, then drawn bottom-up,
    so a chain of a thousand ``.transform()`` does not recurse per step.
    """
    if isinstance(node, Fallback) and node.label is not None:
        with g.subgraph(_title(node, "fallback")):
            return _add_step(g, node, g.draw(node.primary))
    spine = [node]
    below = _spine_inner(node)
    while isinstance(below, _STEP_KINDS) and below.label is None:
        spine.append(below)
        below = _spine_inner(below)
    block = g.draw(below)
    for step in reversed(spine):
        block = _add_step(g, step, block)
    return block


def _spine_inner(node: Any) -> Agent[Any, Any, Any]:
    inner: Agent[Any, Any, Any] = node.primary if isinstance(node, Fallback) else node.inner
    return inner


def _add_step(g: MermaidGraph, node: Any, inner: Block) -> Block:
    """Draw ``node``'s own part after the block of what it wraps."""
    if isinstance(node, Fallback):
        backup = g.draw(node.backup)
        g.link(inner, backup, "on failure", "dotted", on_failure=True)
        return Block(inner.entries, inner.exits + backup.exits, backup.failure_exits)
    what = node.kind
    step = g.node(f"{what}: {_fn_name(node.f)}", "parallelogram")
    here = Block((step,), (step,))
    if what == "transform":
        g.link(inner, here)
        return Block(inner.entries, (step,), inner.failure_exits)
    g.link(inner, here, "on failure", "dotted", on_failure=True)
    if what == "map_error":
        return Block(inner.entries, inner.exits, (step,))
    return Block(inner.entries, inner.exits + (step,), ())  # recover: never fails


def _wrapped(title: Callable[[Any], str]) -> Callable[[MermaidGraph, Any], Block]:
    def draw(g: MermaidGraph, node: Any) -> Block:
        with g.subgraph(_title(node, title(node))):
            return g.draw(node.inner)

    return draw


def _seconds(s: float) -> str:
    return f"{s:g}s"


def _retry_title(node: Retry[Any, Any, Any]) -> str:
    text = f"retry up to {node.times}x"
    if node.deadline is not None:
        text += f" within {_seconds(node.deadline)}"
    return text


def _rate_title(node: Rate[Any, Any, Any]) -> str:
    shared = " shared" if node.shared is not None else ""
    return f"rate {node.calls:g} per {_seconds(node.per)}{shared}"


# --------------------------------------------------------------------------
# Choices, loops, bind and workflows


def _draw_switch(g: MermaidGraph, node: Switch[Any, Any, Any]) -> Block:
    cases = [(repr(k), b) for k, b in zip(node.keys, node.branches, strict=True)]
    if node.default is not None:
        cases.append(("default", node.default))
    return _draw_choice(g, node, f"switch on {_fn_name(node.key)}", cases)


def _draw_when(g: MermaidGraph, node: When[Any, Any, Any]) -> Block:
    cases = [("yes", node.then), ("no", node.otherwise)]
    return _draw_choice(g, node, f"when {_fn_name(node.pred)}", cases)


def _draw_bind(g: MermaidGraph, node: Bind[Any, Any, Any]) -> Block:
    with nullcontext() if node.label is None else g.subgraph(node.label):
        inner = g.draw(node.inner)
        chosen = g.node(f"bind {_fn_name(node.f)}: agent chosen at run time", "hexagon")
        g.link(inner, Block((chosen,), (chosen,)))
        return Block(inner.entries, (chosen,))


def _draw_repeat(g: MermaidGraph, node: Repeat[Any, Any, Any]) -> Block:
    title = f"repeat until {_fn_name(node.until)}, at most {node.max_times}x"
    with g.subgraph(title if node.label is None else f"{node.label}: {title}"):
        step = g.draw(node.step)
    g.link(step, step, "next round", "dotted")
    return step


def _draw_choice(
    g: MermaidGraph, node: Agent[Any, Any, Any], what: str, cases: list[tuple[str, Agent[Any, Any, Any]]]
) -> Block:
    """A diamond for the choice, an arrow labelled with each case to its branch."""
    # No closure around g.draw: drawing recurses once per level (MAX_DEPTH).
    with nullcontext() if node.label is None else g.subgraph(node.label):
        diamond = g.node(what, "diamond")
        start = Block((diamond,), (diamond,))
        exits: list[str] = []
        for text, branch in cases:
            block = g.draw(branch)
            g.link(start, block, text)
            exits.extend(block.exits)
        return Block((diamond,), tuple(exits))


def _draw_workflow(graph: MermaidGraph, node: WorkflowNode[Any, Any, Any]) -> Block:
    """A box titled with the workflow's name; an arrow per dependency.

    Data dependencies are solid arrows, ``depend()`` orderings dotted.
    """
    title = node.kind if node.name == node.kind else f"{node.kind}: {node.name}"
    with graph.subgraph(title):
        blocks: list[Block] = []
        for kid in node.agents:
            blocks.append(graph.draw(kid))
    has_succ = [False] * len(blocks)
    for i, ps in enumerate(node.preds):
        data = set(node.data[i])
        for p in ps:
            has_succ[p] = True
            graph.link(blocks[p], blocks[i], style="solid" if p in data else "dotted")
    roots = [b for b, ps in zip(blocks, node.preds, strict=True) if not ps]
    sinks = [b for b, used in zip(blocks, has_succ, strict=True) if not used]
    if node.output is not None:
        sinks = [blocks[node.output]]
    return Block(
        tuple(e for b in roots for e in b.entries),
        tuple(e for b in sinks for e in b.exits),
    )


_RULES: dict[type[Any], Callable[[MermaidGraph, Any], Block]] = {
    Leaf: _draw_leaf,
    Const: _draw_leaf,
    Then: _draw_seq,
    Parallel: _draw_par,
    Fallback: _draw_steps,
    Timeout: _wrapped(lambda n: f"timeout {_seconds(n.seconds)}"),
    Retry: _wrapped(_retry_title),
    Limit: _wrapped(lambda n: f"limit {n.n}" + (" shared" if n.shared is not None else "")),
    Prioritized: _wrapped(lambda n: f"priority {n.value.name}"),
    Rate: _wrapped(_rate_title),
    Transform: _draw_steps,
    MapError: _draw_steps,
    Recover: _draw_steps,
    Switch: _draw_switch,
    When: _draw_when,
    Bind: _draw_bind,
    Repeat: _draw_repeat,
    WorkflowNode: _draw_workflow,
}


def _draw_generic(g: MermaidGraph, node: Agent[Any, Any, Any]) -> Block:
    """A node kind without a rule: a box, or a labelled box around its children."""
    kids = node.children()
    title = node.kind if node.label is None else f"{node.kind}: {node.label}"
    if not kids:
        nid = g.node(title, "box")
        return Block((nid,), (nid,))
    with g.subgraph(title):
        blocks: list[Block] = []
        for kid in kids:
            blocks.append(g.draw(kid))
    return _side_by_side(blocks)
