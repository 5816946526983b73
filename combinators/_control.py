"""Choices and loops: ``switch``, ``when``, ``Agent.bind`` and ``repeat``.

The static forms keep the tree inspectable: every branch of a ``switch`` or
``when`` is a child node (drawn, journaled and observed even when not taken)
and a ``repeat`` holds its one step.  Only ``bind`` is dynamic: the agent it
runs is chosen from a value at run time, so it is compiled then, and a drawing
shows the ``bind`` node's first operand and an opaque "chosen at run time" box.

Node paths (``p`` is the node's own path):

* ``switch``/``when``: the chosen branch runs at ``p/<branch name>`` (indexed
  as ``p/<name>[i]`` where branch names repeat, as elsewhere in the tree);
* ``bind``: the first operand at ``p/<name>``, the chosen agent at
  ``p/bind[<key>]`` where the key is the chosen agent's name or the user's
  ``key(value)``;
* ``repeat``: round ``r`` (from 1) runs the step at ``p/round-r/<step name>``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, ClassVar, Final, TypeVar, final, overload

import attrs
import trio
from returns.result import Failure, Result, Success

from ._exceptions import AgentTypeError, BuildError, GaveUp
from ._expr import _NOT_PARTS, Agent, _fn_name, _require_agent, _require_callable
from ._notes import note_function
from ._plan import Compiler, Env, compiles, segments
from ._types import Runner, _Err_co, _In_contra, _Out_co

if TYPE_CHECKING:
    from ._mermaid import Block, MermaidGraph

_I = TypeVar("_I")
_O = TypeVar("_O")
_E = TypeVar("_E")
_E2 = TypeVar("_E2")
_K = TypeVar("_K", bound=Hashable)
_S = TypeVar("_S")


@attrs.frozen
class NoBranch:
    """A ``switch`` at ``path`` got a key with no branch and had no default.

    >>> from combinators import pure, run_sync, switch
    >>> route = switch(len, {1: pure(str.upper)}).named("route")
    >>> run_sync(route, "abc")
    <Failure: NoBranch(key=3, path='route')>
    """

    key: Any
    path: str


# --------------------------------------------------------------------------
# Nodes


@final
@attrs.frozen(eq=False, repr=False)
class Switch(Agent[_In_contra, _Out_co, _Err_co]):
    """``switch(key, {k: agent, ...}, default=...)``: one branch per input."""

    key: Callable[[Any], Any]
    keys: tuple[Hashable, ...]
    branches: tuple[Agent[Any, Any, Any], ...]
    default: Agent[Any, Any, Any] | None
    kind: ClassVar[str] = "switch"

    def _repr_parts(self) -> list[object]:
        parts: list[object] = [f"switch({_fn_name(self.key)}, {{"]
        for i, (k, branch) in enumerate(zip(self.keys, self.branches, strict=True)):
            if i:
                parts.append(", ")
            parts.extend((f"{k!r}: ", branch))
        parts.append("}")
        if self.default is not None:
            parts.extend((", default=", self.default))
        parts.append(")" if self.label is None else f").named({self.label!r})")
        return parts

    def _mermaid(self, g: MermaidGraph) -> Block:
        cases = [(repr(k), b) for k, b in zip(self.keys, self.branches, strict=True)]
        if self.default is not None:
            cases.append(("default", self.default))
        return _draw_choice(g, self, f"switch on {_fn_name(self.key)}", cases)


@final
@attrs.frozen(eq=False, repr=False)
class When(Agent[_In_contra, _Out_co, _Err_co]):
    """``when(pred, then, otherwise)``: ``then`` where ``pred(x)`` is true."""

    pred: Callable[[Any], Any]
    then: Agent[Any, Any, Any]
    otherwise: Agent[Any, Any, Any]
    kind: ClassVar[str] = "when"

    def _repr_parts(self) -> list[object]:
        tail = ")" if self.label is None else f").named({self.label!r})"
        return [f"when({_fn_name(self.pred)}, ", self.then, ", ", self.otherwise, tail]

    def _mermaid(self, g: MermaidGraph) -> Block:
        cases = [("yes", self.then), ("no", self.otherwise)]
        return _draw_choice(g, self, f"when {_fn_name(self.pred)}", cases)


@final
@attrs.frozen(eq=False, repr=False)
class Bind(Agent[_In_contra, _Out_co, _Err_co]):
    """``inner.bind(f)``: run ``inner``, then the agent ``f`` picks for its value."""

    inner: Agent[Any, Any, Any]
    f: Callable[[Any], Any]
    key: Callable[[Any], str] | None
    kind: ClassVar[str] = "bind"
    _wraps: ClassVar[str | None] = "inner"

    def _repr_parts(self) -> list[object]:
        tail = ")" if self.label is None else f").named({self.label!r})"
        return [self.inner, f".bind({_fn_name(self.f)}", tail]

    def _mermaid(self, g: MermaidGraph) -> Block:
        from ._mermaid import Block

        with nullcontext() if self.label is None else g.subgraph(self.label):
            inner = g.draw(self.inner)
            chosen = g.node(f"bind {_fn_name(self.f)}: agent chosen at run time", "hexagon")
            g.link(inner, Block((chosen,), (chosen,)))
            return Block(inner.entries, (chosen,))


@final
@attrs.frozen(eq=False, repr=False)
class Repeat(Agent[_In_contra, _Out_co, _Err_co]):
    """``repeat(step, until=pred, max_times=n)``: a bounded loop of rounds."""

    step: Agent[Any, Any, Any]
    until: Callable[[Any], Any]
    max_times: int
    kind: ClassVar[str] = "repeat"
    _wraps: ClassVar[str | None] = "step"

    def _repr_parts(self) -> list[object]:
        tail = ")" if self.label is None else f").named({self.label!r})"
        return [
            "repeat(",
            self.step,
            f", until={_fn_name(self.until)}, max_times={self.max_times}",
            tail,
        ]

    def _mermaid(self, g: MermaidGraph) -> Block:
        title = f"repeat until {_fn_name(self.until)}, at most {self.max_times}x"
        with g.subgraph(title if self.label is None else f"{self.label}: {title}"):
            step = g.draw(self.step)
        g.link(step, step, "next round", "dotted")
        return step


def _draw_choice(
    g: MermaidGraph, node: Agent[Any, Any, Any], what: str, cases: list[tuple[str, Agent[Any, Any, Any]]]
) -> Block:
    """A diamond for the choice, an arrow labelled with each case to its branch."""
    from ._mermaid import Block

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


# --------------------------------------------------------------------------
# Constructors


@overload
def switch(
    key: Callable[[_I], _K],
    branches: Mapping[_K, Agent[_I, _O, _E]],
    *,
    default: Agent[_I, _O, _E2],
) -> Agent[_I, _O, _E | _E2]: ...
@overload
def switch(
    key: Callable[[_I], _K],
    branches: Mapping[_K, Agent[_I, _O, _E]],
    *,
    default: None = None,
) -> Agent[_I, _O, _E | NoBranch]: ...
def switch(
    key: Callable[[Any], Any],
    branches: Mapping[Any, Agent[Any, Any, Any]],
    *,
    default: Agent[Any, Any, Any] | None = None,
) -> Agent[Any, Any, Any]:
    """Run the branch that ``key(x)`` selects; all branches are nodes of the tree.

    Every branch (and the default) is compiled once and drawn, journaled and
    observed like any child, whether or not a run takes it.  A key with no
    branch runs ``default``; with no default the result is
    ``Failure(NoBranch(key, path))`` and ``NoBranch`` is in the error type.
    ``key`` is a plain function; an exception it raises is a bug and
    propagates, with the node path as a note.

    All branches take the same input and give the same output type: mypy
    joins differing output types (``int`` and ``str`` give ``object``), and
    rejects the branches outright wherever the result's type is expected.

    >>> from combinators import pure, run_sync
    >>> sign = switch(lambda x: x > 0, {True: pure(str), False: pure(lambda x: "-")})
    >>> run_sync(sign, 5), run_sync(sign, -5)
    (<Success: 5>, <Success: ->)
    """
    _require_callable(key, "switch() key")
    if not isinstance(branches, Mapping):
        msg = f"switch(): branches must be a mapping of key -> agent, got {type(branches).__name__} {branches!r}"
        raise AgentTypeError(msg)
    for k, branch in branches.items():
        _require_agent(branch, f"switch() branch {k!r}", None)
    if default is not None:
        _require_agent(default, "switch() default", None)
    if not branches and default is None:
        msg = "switch(): no branches and no default; give at least one branch or a default agent"
        raise BuildError(msg)
    return Switch(key, tuple(branches.keys()), tuple(branches.values()), default)


def when(
    pred: Callable[[_I], object],
    then: Agent[_I, _O, _E],
    otherwise: Agent[_I, _O, _E2],
) -> Agent[_I, _O, _E | _E2]:
    """Run ``then`` where ``pred(x)`` is true, else ``otherwise`` (both are nodes).

    The two-way ``switch``: the input goes unchanged to the chosen branch,
    whose outcome and time are the node's.

    >>> from combinators import pure, run_sync
    >>> absolute = when(lambda x: x < 0, pure(lambda x: -x), pure(lambda x: x))
    >>> run_sync(absolute, -3)
    <Success: 3>
    """
    _require_callable(pred, "when() predicate")
    _require_agent(then, "when() then-branch", None)
    _require_agent(otherwise, "when() otherwise-branch", None)
    return When(pred, then, otherwise)


def make_bind(
    first: Agent[Any, Any, Any],
    f: Callable[[Any], Agent[Any, Any, Any]],
    key: Callable[[Any], str] | None,
) -> Agent[Any, Any, Any]:
    """The untyped builder behind :meth:`Agent.bind` (the method is the typed API)."""
    _require_agent(first, "bind() agent", None)
    _require_callable(f, f"{first.name}.bind()")
    if key is not None:
        _require_callable(key, f"{first.name}.bind() key")
    return Bind(first, f, key)


def repeat(
    step: Agent[_S, _S, _E],
    *,
    until: Callable[[_S], object],
    max_times: int,
) -> Agent[_S, _S, _E | GaveUp[_S]]:
    """Run ``step`` on its own output until ``until(state)`` holds, at most ``max_times`` rounds.

    A round runs ``step`` on the state and ``until`` is checked on its output
    (so at least one round runs, like ``repeat ... until``).  A failing round
    ends the loop with that failure.  After ``max_times`` rounds without the
    condition the result is ``Failure(GaveUp(last_state, rounds))``.

    The loop is a plain ``while`` loop: no recursion and nothing kept per
    round, so 100,000 rounds cost 100,000 step runs and no more memory.  Each
    round runs at its own path ``.../round-<r>/<step>``.

    >>> from combinators import pure, run_sync
    >>> run_sync(repeat(pure(lambda x: x * 2), until=lambda x: x > 100, max_times=10), 3)
    <Success: 192>
    """
    _require_agent(step, "repeat() step", None)
    _require_callable(until, f"repeat({step.name}) until")
    if isinstance(max_times, bool) or not isinstance(max_times, int) or max_times < 1:
        msg = f"repeat({step.name}): max_times must be an int >= 1, got {max_times!r}"
        raise BuildError(msg)
    return Repeat(step, until, max_times)


# --------------------------------------------------------------------------
# Compile rules


@compiles(Switch)
def _compile_switch(c: Compiler, node: Switch[Any, Any, Any], env: Env) -> Runner:
    kids = node.children()
    segs = segments(kids)
    table: dict[Any, tuple[Runner, str]] = {}
    for k, branch, seg in zip(node.keys, node.branches, segs, strict=False):
        table[k] = (c.compile(branch, env), seg)
    fallback = (c.compile(node.default, env), segs[-1]) if node.default is not None else None
    key = node.key

    async def run_switch(x: Any, path: str) -> Result[Any, Any]:
        try:
            k = key(x)
            chosen = table.get(k, fallback)
        except Exception as exc:
            note_function(exc, "key", key, path)
            raise
        if chosen is None:
            await trio.lowlevel.checkpoint()
            return Failure(NoBranch(k, path))
        runner, seg = chosen
        return await runner(x, path + seg)

    return run_switch


@compiles(When)
def _compile_when(c: Compiler, node: When[Any, Any, Any], env: Env) -> Runner:
    seg_then, seg_else = segments((node.then, node.otherwise))
    then_runner = c.compile(node.then, env)
    else_runner = c.compile(node.otherwise, env)
    pred = node.pred

    async def run_when(x: Any, path: str) -> Result[Any, Any]:
        try:
            taken = bool(pred(x))
        except Exception as exc:
            note_function(exc, "predicate", pred, path)
            raise
        if taken:
            return await then_runner(x, path + seg_then)
        return await else_runner(x, path + seg_else)

    return run_when


_ATOMS: Final = (str, int, float, bool, bytes, type(None))


def _parts(tree: Agent[Any, Any, Any]) -> Hashable:
    """What ``tree`` is built from: its shape, its values, every other payload by identity.

    Two trees with equal keys are the same tree rebuilt (the canon keeps
    the first, so the ids it holds stay alive and are not reused).
    """
    key: list[Hashable] = []
    for node in tree.walk():
        key.append(id(type(node)))
        for field in attrs.fields(type(node)):
            if field.name in _NOT_PARTS:
                continue
            value = getattr(node, field.name)
            if isinstance(value, Agent):
                continue  # its own entry follows in the walk
            if isinstance(value, tuple) and value and isinstance(value[0], Agent):
                key.append(len(value))
            else:
                key.append(_value_key(value))
    return tuple(key)


def _value_key(value: object) -> Hashable:
    """Plain constants by type and ``repr`` (``0.0`` is not ``-0.0``), tuples and
    attrs instances (a ``Backoff``) by their parts, anything else by identity."""
    if type(value) in _ATOMS:
        return (id(type(value)), repr(value))
    if type(value) is tuple:
        return (id(tuple), tuple(_value_key(v) for v in value))
    if attrs.has(type(value)):
        fields = attrs.fields(type(value))  # type: ignore[arg-type]  # attrs.has() said so
        return (id(type(value)), tuple(_value_key(getattr(value, f.name)) for f in fields))
    return id(value)


@compiles(Bind)
def _compile_bind(c: Compiler, node: Bind[Any, Any, Any], env: Env) -> Runner:
    inner = c.compile(node.inner, env)
    seg = segments((node.inner,))[0]
    f, key = node.f, node.key
    # Agents that ``f`` builds afresh from the same parts share one compiled
    # runner (and so one set of limiters) for the run; the compiler's own
    # memo is by identity.  "The same parts" is identity of every payload,
    # not equality: succeed(Decimal("1.0")) and succeed(Decimal("1")) are
    # equal, but must each give their own value.
    canon: dict[Hashable, Agent[Any, Any, Any]] = {}
    last: list[Any] = [None, None]  # the agent f gave last, and its canonical one
    c.per_run = True  # it compiles as it runs, into this run's compiler

    async def run_bind(x: Any, path: str) -> Result[Any, Any]:
        result = await inner(x, path + seg)
        if not isinstance(result, Success):
            return result
        value = result._inner_value
        try:
            chosen = f(value)
        except Exception as exc:
            note_function(exc, "bind", f, path)
            raise
        try:
            label = key(value) if key is not None else None
        except Exception as exc:
            note_function(exc, "key", key, path)
            raise
        if not isinstance(chosen, Agent):
            msg = (
                f"the function {_fn_name(f)!r} given to bind() at {path!r} returned "
                f"{type(chosen).__name__} {chosen!r}; it must return an Agent"
            )
            raise AgentTypeError(msg)
        if chosen is last[0]:
            chosen = last[1]  # f gave the same object again: no walk
        else:
            canonical = canon.setdefault(_parts(chosen), chosen)
            last[:] = [chosen, canonical]
            chosen = canonical
        runner = c.compile(chosen, env)
        name = str(label if label is not None else chosen.name).replace("/", "_")
        return await runner(value, f"{path}/bind[{name}]")

    return run_bind


@compiles(Repeat)
def _compile_repeat(c: Compiler, node: Repeat[Any, Any, Any], env: Env) -> Runner:
    step = c.compile(node.step, env)
    seg = segments((node.step,))[0]
    until, max_times = node.until, node.max_times
    checkpoint = trio.lowlevel.checkpoint

    async def run_repeat(x: Any, path: str) -> Result[Any, Any]:
        state = x
        rounds = 0
        while rounds < max_times:
            rounds += 1
            result = await step(state, f"{path}/round-{rounds}{seg}")
            if not isinstance(result, Success):
                return result
            state = result._inner_value
            try:
                done = until(state)
            except Exception as exc:
                note_function(exc, "until", until, path)
                raise
            if done:
                return result
            # A step of pure leaves never yields to trio: give the scheduler
            # (and any enclosing timeout) a checkpoint once per round.
            await checkpoint()
        return Failure(GaveUp(state, rounds))

    return run_repeat
