"""Sequences: ``>>``, ``transform``, ``map_error``, ``recover``, ``fallback``.

A left spine of these nodes is flattened, once per tree, into a list of
steps walked by one loop: a chain of 100,000 steps uses neither Python
recursion nor a task per step.  A handler (``map_error``, ``recover``,
``fallback``) covers everything before it in the list, which is exactly the
subtree it wraps; a right operand of ``>>`` that holds a handler therefore
stays one nested step.

Plain ``agent`` and ``pure`` leaves with nothing wrapped around them (no
limit, rate, executor, observer or journal in force) are called inline
rather than through a runner: that is what keeps a step near the cost of
the hand-written ``await``.
"""

from __future__ import annotations

from typing import Any, Final

from returns.result import Failure, Result, Success

from ._aio_leaf import is_host_call
from ._expr import Agent, Fallback, Leaf, LeafMode, MapError, Recover, Then, Transform, node_cache
from ._check import _fn_name
from ._notes import not_a_result, note_function, note_node
from ._plan import Compiler, Env, bare_leaf, compiles, segments
from ._types import Runner

_CALL: Final = 0  # a compiled runner
_AGENT: Final = 1  # an inlined agent() leaf function
_PURE: Final = 2  # an inlined pure() leaf function
_MAP: Final = 3
_MAP_ERROR: Final = 4
_RECOVER: Final = 5
_FALLBACK: Final = 6
_HANDLERS: Final = frozenset({_MAP_ERROR, _RECOVER, _FALLBACK})
_CHAIN_KINDS: Final = (Then, Transform, MapError, Recover, Fallback)
_OP_NAMES: Final = {_MAP: "transform", _MAP_ERROR: "map_error", _RECOVER: "recover"}

# Flattened step lists, their path segments and the runners of chains made
# only of inlined steps are kept on the chain's root node (``node_cache``):
# trees are immutable, so they never go stale, and they go with the node.


def _is_chain(node: Agent[Any, Any, Any], root: Agent[Any, Any, Any]) -> bool:
    return isinstance(node, _CHAIN_KINDS) and (node is root or node.label is None)


def _handler_map(root: Agent[Any, Any, Any]) -> dict[int, bool]:
    """For every chain node under ``root`` (by id): does its flat list hold a handler?

    One iterative post-order pass, so right-nested chains stay linear.
    """
    memo: dict[int, bool] = {}
    stack: list[tuple[Agent[Any, Any, Any], bool]] = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if id(node) in memo:
            continue
        if not _is_chain(node, root):
            memo[id(node)] = False
            continue
        kids = node.children()
        if expanded:
            own = isinstance(node, MapError | Recover | Fallback)
            memo[id(node)] = own or any(memo[id(k)] for k in kids)
        else:
            stack.append((node, True))
            stack.extend((k, False) for k in kids)
    return memo


class _Right:
    """Marks the right operand of ``>>`` while flattening."""

    __slots__ = ("node",)

    def __init__(self, node: Agent[Any, Any, Any]) -> None:
        self.node = node


def flatten(root: Agent[Any, Any, Any]) -> tuple[tuple[int, Any], ...]:
    """The chain under ``root`` as ``(op, payload)`` steps, left to right."""
    cache = node_cache(root)
    cached: tuple[tuple[int, Any], ...] | None = cache.get("flat")
    if cached is not None:
        return cached
    holds_handler = _handler_map(root)
    out: list[tuple[int, Any]] = []
    stack: list[Any] = [root]
    while stack:
        item = stack.pop()
        if isinstance(item, tuple):
            out.append(item)
            continue
        if isinstance(item, _Right):
            node = item.node
            if holds_handler.get(id(node), False):
                out.append((_CALL, node))
            else:
                stack.append(node)
            continue
        node = item
        if not _is_chain(node, root):
            out.append((_CALL, node))
            continue
        match node:
            case Then(first, second):
                stack.append(_Right(second))
                stack.append(first)
            case Transform(inner, f):
                stack.append((_MAP, f))
                stack.append(inner)
            case MapError(inner, f):
                stack.append((_MAP_ERROR, f))
                stack.append(inner)
            case Recover(inner, f):
                stack.append((_RECOVER, f))
                stack.append(inner)
            case Fallback(primary, backup):
                stack.append((_FALLBACK, backup))
                stack.append(primary)
    flat = tuple(out)
    cache["flat"] = flat
    return flat


def chain_steps(root: Agent[Any, Any, Any]) -> tuple[tuple[tuple[int, Any], ...], tuple[str, ...]]:
    """The flattened steps of the chain under ``root`` and the path segments
    of its sub-agents (one per ``_CALL`` and ``_FALLBACK`` step, in order).

    The run paths of a chain's parts come from here, for the interpreter
    and for the journal's manifest alike.
    """
    flat = flatten(root)
    cache = node_cache(root)
    segs: tuple[str, ...] | None = cache.get("segments")
    if segs is None:
        segs = segments(tuple(p for op, p in flat if op in (_CALL, _FALLBACK)))
        cache["segments"] = segs
    return flat, segs


def chain_parts(root: Agent[Any, Any, Any]) -> list[tuple[str, Agent[Any, Any, Any] | None, str]]:
    """What the chain under ``root`` is made of, left to right, as the run sees it.

    ``("step", agent, segment)`` for a sub-agent run at ``path + segment``,
    ``("fallback", backup, segment)`` for a fallback's backup, and
    ``("transform" | "map_error" | "recover", None, "")`` for the functions
    between them.  The journal's manifest is written from this.
    """
    flat, segs = chain_steps(root)
    seg = iter(segs)
    out: list[tuple[str, Agent[Any, Any, Any] | None, str]] = []
    for op, payload in flat:
        if op == _CALL:
            out.append(("step", payload, next(seg)))
        elif op == _FALLBACK:
            out.append(("fallback", payload, next(seg)))
        else:
            out.append((_OP_NAMES[op], None, ""))
    return out


def _inlinable(c: Compiler, node: Agent[Any, Any, Any], env: Env) -> int | None:
    """The inline op for a plain leaf with nothing wrapped around it (not even a limiter), or None."""
    leaf = bare_leaf(c, node, env)
    if leaf is None or env.limiters:
        return None
    if is_host_call(leaf.fn):
        c.host_leaves = True  # inlined, it still needs the run's asyncio loop
    if leaf.mode is LeafMode.RESULT:
        return _AGENT
    if leaf.mode is LeafMode.PURE:
        return _PURE
    return None


def compile_chain(c: Compiler, root: Agent[Any, Any, Any], env: Env) -> Runner:
    """The runner for a flattened chain (see the module docs)."""
    plain = not c.observed and not c.leaf_layers and env == _PLAIN_ENV
    cache = node_cache(root)
    if plain:
        cached: Runner | None = cache.get("plain")
        if cached is not None:
            return cached
    flat, all_segs = chain_steps(root)
    segs = iter(all_segs)
    ops: list[tuple[int, Any, str]] = []
    for op, payload in flat:
        if op == _CALL:
            seg = next(segs)
            inline = _inlinable(c, payload, env)
            if inline is not None:
                ops.append((inline, payload.fn, seg))
            else:
                ops.append((_CALL, c.compile(payload, env), seg))
        elif op == _FALLBACK:
            ops.append((op, c.compile(payload, env), next(segs)))
        else:
            ops.append((op, payload, ""))
    steps = tuple(ops)
    if all(op in (_AGENT, _PURE, _MAP) for op, _, _ in steps):
        runner = _straight(steps)
        if plain:
            cache["plain"] = runner
        return runner
    n = len(steps)
    # next_handler[i]: index of the first handler at or after i (n if none),
    # so a failure skips the rest of the chain in one jump.
    next_handler = [n] * (n + 1)
    for i in range(n - 1, -1, -1):
        next_handler[i] = i if steps[i][0] in _HANDLERS else next_handler[i + 1]

    async def run_chain(x0: Any, path: str) -> Result[Any, Any]:
        x = x0
        result: Any = None  # None: success with value x
        i = 0
        try:
            while i < n:
                op, payload, seg = steps[i]
                if op == _AGENT:
                    result = await payload(x)
                    if type(result) is Success:
                        x = result._inner_value
                        i += 1
                    elif type(result) is Failure:
                        i = next_handler[i + 1]
                    else:
                        raise not_a_result(_fn_name(payload), path + seg, result)
                elif op == _CALL:
                    result = await payload(x, path + seg)
                    if isinstance(result, Success):
                        x = result._inner_value
                        i += 1
                    else:
                        i = next_handler[i + 1]
                elif op == _PURE or op == _MAP:
                    x = payload(x)
                    result = None
                    i += 1
                elif result is None or isinstance(result, Success):
                    i += 1  # a handler on the success path does nothing
                elif op == _FALLBACK:
                    result = await payload(x0, path + seg)
                    if isinstance(result, Success):
                        x = result._inner_value
                        i += 1
                    else:
                        i = next_handler[i + 1]
                else:
                    mapped = payload(result._inner_value)
                    if op == _RECOVER:
                        x = mapped
                        result = None
                        i += 1
                    else:
                        result = Failure(mapped)
                        i = next_handler[i + 1]
        except Exception as exc:
            op, payload, seg = steps[i]
            if op in (_AGENT, _PURE):
                note_node(exc, path + seg)
            elif op in _OP_NAMES:
                note_function(exc, _OP_NAMES[op], payload, path)
            raise
        if result is None:
            return Success(x)
        return result  # type: ignore[no-any-return]

    return run_chain


def _straight(steps: tuple[tuple[int, Any, str], ...]) -> Runner:
    """A chain of inlined steps only, with no handlers: the tightest loop."""
    calls = tuple((op == _AGENT, fn) for op, fn, _ in steps)

    async def run_straight(x: Any, path: str) -> Result[Any, Any]:
        i = 0
        try:
            for i, (is_agent, fn) in enumerate(calls):  # noqa: B007 - i used on error
                if is_agent:
                    result = await fn(x)
                    if type(result) is Success:
                        x = result._inner_value
                    elif type(result) is Failure:
                        return result
                    else:
                        raise not_a_result(_fn_name(fn), path + steps[i][2], result)
                else:
                    x = fn(x)
        except Exception as exc:
            op, fn, seg = steps[i]
            if op == _MAP:
                note_function(exc, "transform", fn, path)
            else:
                note_node(exc, path + seg)
            raise
        if steps[-1][0] == _AGENT:
            return result  # type: ignore[no-any-return]
        return Success(x)

    return run_straight


_PLAIN_ENV: Final = Env()

for _kind in _CHAIN_KINDS:
    compiles(_kind)(compile_chain)
