"""The expression tree: frozen nodes and the operators that build them.

Pure data: nothing here imports trio or runs anything.  Every node is a
frozen attrs class deriving from :class:`Agent`; trees are built with the
operator dunders and methods below and changed only with ``attrs.evolve``.

Equality, hashing and ``repr`` are structural and *iterative*, so a chain of
100,000 ``>>`` never meets Python's recursion limit; hashes are computed once
when a node is built, from its children's cached hashes.
"""

from __future__ import annotations

import enum
import inspect
from datetime import timedelta
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    Final,
    Generic,
    Never,
    TypeVar,
    TypeVarTuple,
    Unpack,
    final,
    overload,
)

import attrs
from returns.result import Result

from ._check import _check_name, _count, _fn_name, _real, _require_callable, _seconds, _show
from ._budget import Budget
from ._cache_store import Cache, CachePolicy
from ._exceptions import AgentTypeError, BuildError, Crashed, OverBudget, TimedOut, Usage
from ._executor_api import Executor, InTask
from ._limits import Priority as Priority
from ._limits import PriorityLimiter, StartWindow
from ._retry import Backoff
from ._types import _E, _E2, _O, _O2, _Err_co, _I, _In_contra, _Out_co, _Ts


_K = TypeVar("_K")
_A = TypeVar("_A", bound="Agent[Any, Any, Any]")
_Res = TypeVar("_Res")  # Parallel's tuple of per-operand Result types (invariant)
_Rs = TypeVarTuple("_Rs")


def _require_agent(value: object, role: str, node: Agent[Any, Any, Any] | None) -> None:
    if not isinstance(value, Agent):
        where = f" (next to {node.name!r})" if node is not None else ""
        hint = ""
        if callable(value):
            hint = "; wrap a function with agent(), lift() or pure() first"
        msg = f"{role} must be an Agent, got {type(value).__name__} {value!r}{where}{hint}"
        raise AgentTypeError(msg)


#: Fields that are bookkeeping, not what a node is made of.
_NOT_PARTS: Final = frozenset({"_hash", "_cache", "_subject", "_depth", "_handler"})

#: The deepest nesting a tree may have (see ``Agent._nesting``).  Compiling,
#: running, drawing and reporting a tree still recurse in Python once per
#: level of nesting; past this depth a tree is refused when it is built,
#: with margin below where those fail under Python's default recursion
#: limit (docs/decisions.md, "How deep a tree may nest").
MAX_DEPTH: Final = 250


def node_cache(node: Agent[Any, Any, Any]) -> dict[str, Any]:
    """The interpreter's cache for ``node`` itself (see ``Agent._cache``)."""
    cache = node._cache
    if cache is None:
        cache = {}
        object.__setattr__(node, "_cache", cache)
    return cache


def _structural_hash(node: Agent[Any, Any, Any]) -> int:
    parts: list[object] = [type(node).__qualname__]
    for field in attrs.fields(type(node)):
        if field.name in _NOT_PARTS:
            continue
        value = getattr(node, field.name)
        if isinstance(value, Agent):
            parts.append(value._hash)
            continue
        if isinstance(value, tuple) and value and isinstance(value[0], Agent):
            parts.append(tuple(v._hash for v in value))
            continue
        try:
            parts.append(hash(value))
        except TypeError:
            # Unhashable payloads (a list given to succeed()) add nothing:
            # equal trees still hash equal, which is all a hash must do.
            parts.append(type(value).__qualname__)
    return hash(tuple(parts))


@attrs.frozen(eq=False, repr=False)
class Agent(Generic[_In_contra, _Out_co, _Err_co]):
    """A node of the expression tree: ``In -> Result[Out, Err]``, run by ``run``.

    Agents are immutable and hashable; building one never runs anything.
    Combine them with ``>>`` (sequence), ``|`` (parallel) and the methods
    below; every combination is again an agent.

    >>> from returns.result import Success
    >>> from combinators import pure, run_sync
    >>> double = pure(lambda x: x * 2).named("double")
    >>> run_sync(double >> double, 3)
    <Success: 12>
    """

    label: str | None = attrs.field(default=None, kw_only=True)
    _hash: int = attrs.field(init=False, default=0)
    #: What the interpreter derived from this very node (its plans, its
    #: flattened steps), kept on the node so that it goes with the node —
    #: also when a leaf function refers back to its own tree, a cycle the
    #: garbage collector frees.  Not part of equality, hash or repr.
    _cache: dict[str, Any] | None = attrs.field(init=False, default=None)
    #: The user-facing name a wrapper above this node is named after (see
    #: ``name``): the label, a leaf's function name, or for a wrapper the
    #: subject of what it wraps.  Kept so that naming costs O(1) per node.
    _subject: str = attrs.field(init=False, default="")
    #: Levels of Python recursion compiling or drawing this tree takes
    #: (``_nesting``); refused past ``MAX_DEPTH``.
    _depth: int = attrs.field(init=False, default=0)
    #: For sequence nodes: does the flattened step list hold a handler
    #: (``map_error``, ``recover``, ``fallback``)?  See ``_chain.flatten``.
    _handler: bool = attrs.field(init=False, default=False)

    #: What a node is called when it has no label (subclasses override).
    kind: ClassVar[str] = "agent"
    #: For a wrapper, the field holding the agent it wraps: an unlabelled
    #: wrapper is named after it (``sentiment.timeout``).  None: the node
    #: is named by its kind (``seq``, ``par``, ``each``).
    _wraps: ClassVar[str | None] = None

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_hash", _structural_hash(self))
        if self.label is not None:
            subject = self.label
        elif self._wraps is not None:
            subject = getattr(self, self._wraps)._subject
        else:
            subject = self._default_name()
        object.__setattr__(self, "_subject", subject)
        depth = self._nesting()
        if depth > MAX_DEPTH:
            msg = (
                f"{self.name}: this tree nests {depth} levels deep, more than the "
                f"{MAX_DEPTH} that can be compiled, run and drawn without reaching "
                f"Python's recursion limit; flatten it (a `>>` chain or a `|` group of "
                f"any length is one level) or run its parts as separate trees"
            )
            raise BuildError(msg)
        object.__setattr__(self, "_depth", depth)

    def _nesting(self) -> int:
        """Levels of recursion below and including this node: one more than its deepest child.

        Sequences and groups override this: their steps and operands are
        walked by loops, so only the nesting of each step counts.
        """
        deepest = 0
        for kid in self.children():
            deepest = max(deepest, kid._depth)
        return deepest + 1

    # -- identity -----------------------------------------------------------

    @property
    def name(self) -> str:
        """The node's name, used in its path: its label, else a name derived from what it is.

        A leaf is named after its function, a wrapper after the agent it
        wraps (``sentiment.timeout``, ``sentiment.retry``: the innermost
        label or function name, so names stay short however deep the
        wrappers go), any other node after its kind (``seq``, ``par``).

        >>> from combinators import pure
        >>> def tidy(text: str) -> str:
        ...     return text.strip()
        >>> pure(tidy).name, pure(tidy).timeout(1).name, (pure(tidy) >> pure(tidy)).name
        ('tidy', 'tidy.timeout', 'seq')
        """
        return self.label if self.label is not None else self._default_name()

    def _default_name(self) -> str:
        if self._wraps is None:
            return self.kind
        return f"{getattr(self, self._wraps)._subject}.{self.kind}"

    def children(self) -> tuple[Agent[Any, Any, Any], ...]:
        """The direct sub-agents of this node, in operand order.

        >>> from combinators import pure
        >>> a, b = pure(str).named("a"), pure(str).named("b")
        >>> [kid.name for kid in (a >> b).children()]
        ['a', 'b']
        """
        out: list[Agent[Any, Any, Any]] = []
        for field in attrs.fields(type(self)):
            value = getattr(self, field.name)
            if isinstance(value, Agent):
                out.append(value)
            elif isinstance(value, tuple) and value and isinstance(value[0], Agent):
                out.extend(value)
        return tuple(out)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Agent):
            return NotImplemented
        stack: list[tuple[Agent[Any, Any, Any], Agent[Any, Any, Any]]] = [(self, other)]
        while stack:
            left, right = stack.pop()
            if left is right:
                continue
            if type(left) is not type(right) or left._hash != right._hash:
                return False
            for field in attrs.fields(type(left)):
                if field.name in _NOT_PARTS:
                    continue
                a, b = getattr(left, field.name), getattr(right, field.name)
                if isinstance(a, Agent) and isinstance(b, Agent):
                    stack.append((a, b))
                elif (
                    isinstance(a, tuple)
                    and isinstance(b, tuple)
                    and a
                    and isinstance(a[0], Agent)
                ):
                    if len(a) != len(b):
                        return False
                    stack.extend(zip(a, b, strict=True))
                elif a is not b and (type(a) is not type(b) or a != b):
                    # Same type too: 1 == True, but succeed(1) is not succeed(True).
                    return False
        return True

    def __ne__(self, other: object) -> bool:
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    def __repr__(self) -> str:
        # An explicit stack of pending text pieces and nodes keeps deep trees
        # off Python's recursion limit; output reads like the DSL.
        pieces: list[str] = []
        stack: list[object] = [self]
        while stack:
            item = stack.pop()
            if isinstance(item, str):
                pieces.append(item)
            else:
                assert isinstance(item, Agent)
                stack.extend(reversed(item._repr_parts()))
        return "".join(pieces)

    def _repr_parts(self) -> list[object]:
        """Text pieces and child nodes that make up this node's ``repr``."""
        kids = self.children()
        parts: list[object] = [f"{self.kind}("]
        for i, kid in enumerate(kids):
            if i:
                parts.append(", ")
            parts.append(kid)
        parts.append(")" if self.label is None else f").named({self.label!r})")
        return parts

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled as a flat table of nodes (children before parents), so
        # pickling, copying and loading any depth or length of tree never
        # recurse once per node; shared subtrees stay shared.
        return (_unpickle_tree, (_tree_table(self),))

    def walk(self) -> Iterator[Agent[Any, Any, Any]]:
        """Every node of the tree, parents before children (iterative).

        >>> from combinators import pure
        >>> a, b = pure(str).named("a"), pure(str).named("b")
        >>> [node.name for node in (a | b.timeout(1)).walk()]
        ['par', 'a', 'b.timeout', 'b']
        """
        stack: list[Agent[Any, Any, Any]] = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children()))

    # -- things that would surprise -----------------------------------------

    def __bool__(self) -> bool:
        msg = f"the truth value of agent {self.name!r} is ambiguous: compare or run it instead"
        raise TypeError(msg)

    if not TYPE_CHECKING:
        # Runtime-only, so that mypy also reports `await agent` and `agent(x)`.

        def __await__(self) -> Any:
            msg = f"an Agent is a description, not a coroutine: use `await run({self.name}, x)`"
            raise TypeError(msg)

        def __call__(self, *args: object, **kwargs: object) -> Never:
            msg = f"agent {self.name!r} is not called directly: use `await run(agent, x)` or run_sync"
            raise TypeError(msg)

    # -- operators ----------------------------------------------------------

    def __rshift__(self, other: Agent[_Out_co, _O2, _E2]) -> Agent[_In_contra, _O2, _Err_co | _E2]:
        """``a >> b``: run ``a``, feed its success to ``b`` (see :func:`then`)."""
        return then(self, other)


    @overload
    def __or__(  # type: ignore[misc]
        self: Parallel[_I, tuple[Unpack[_Ts]], tuple[Unpack[_Rs]], _E], other: Agent[_I, _O2, _E2]
    ) -> Parallel[_I, tuple[Unpack[_Ts], _O2], tuple[Unpack[_Rs], Result[_O2, _E2]], _E | _E2]: ...
    @overload
    def __or__(
        self: Agent[_I, _O, _E], other: Agent[_I, _O2, _E2]
    ) -> Parallel[_I, tuple[_O, _O2], tuple[Result[_O, _E], Result[_O2, _E2]], _E | _E2]: ...
    def __or__(self, other: Agent[Any, Any, Any]) -> Parallel[Any, Any, Any, Any]:
        """``a | b``: run both on the same input at once (see :func:`both`).

        A group on the left grows flat: ``a | b | c`` gives a 3-tuple.
        """
        return both(self, other)

    # mypy binds ``_I`` from the left operand alone, so ``a | b`` where ``a``
    # takes a wider input than ``b`` (``succeed(1) | b``) fails ``__or__``;
    # mypy then tries ``b.__ror__(a)``, which binds ``_I`` from ``b``.  At run
    # time ``__or__`` always answers for an agent, so this runs only for a
    # left operand that is not one, and refuses it.
    @overload
    def __ror__(  # type: ignore[misc]
        self: Agent[_I, _O2, _E2], other: Parallel[_I, tuple[Unpack[_Ts]], tuple[Unpack[_Rs]], _E]
    ) -> Parallel[_I, tuple[Unpack[_Ts], _O2], tuple[Unpack[_Rs], Result[_O2, _E2]], _E | _E2]: ...
    @overload
    def __ror__(  # type: ignore[misc]
        self: Agent[_I, _O2, _E2], other: Agent[_I, _O, _E]
    ) -> Parallel[_I, tuple[_O, _O2], tuple[Result[_O, _E], Result[_O2, _E2]], _E | _E2]: ...
    def __ror__(self, other: object) -> Parallel[Any, Any, Any, Any]:
        _require_agent(other, "left operand of |", self)
        return both(other, self)  # type: ignore[arg-type]  # pragma: no cover - __or__ answers first

    if not TYPE_CHECKING:
        # Runtime-only, so that mypy still reports `function >> agent`.

        def __rrshift__(self, other: object) -> Never:
            _require_agent(other, "left operand of >>", self)
            raise AssertionError  # pragma: no cover - _require_agent raised


    # -- methods ------------------------------------------------------------

    def named(self, name: str) -> Agent[_In_contra, _Out_co, _Err_co]:
        """The same agent under another name (used in node paths).

        >>> from combinators import pure
        >>> pure(str.strip).named("tidy").name
        'tidy'
        """
        return attrs.evolve(self, label=_check_name(name, f"{self.name}.named()"))

    def transform(self, f: Callable[[_Out_co], _O2]) -> Agent[_In_contra, _O2, _Err_co]:
        """Map the success value with a plain function.

        >>> from combinators import pure, run_sync
        >>> run_sync(pure(len).transform(lambda n: n * 10), "abc")
        <Success: 30>
        """
        _require_callable(f, f"{self.name}.transform()")
        return Transform(self, f)

    def map_error(self, f: Callable[[_Err_co], _E2]) -> Agent[_In_contra, _Out_co, _E2]:
        """Map the error value with a plain function.

        >>> from combinators import fail, run_sync
        >>> run_sync(fail("no").map_error(str.upper), None)
        <Failure: NO>
        """
        _require_callable(f, f"{self.name}.map_error()")
        return MapError(self, f)

    def fallback(
        self: Agent[_I, _O, _E], other: Agent[_I, _O2, _E2]
    ) -> Agent[_I, _O | _O2, _E2]:
        """On failure, run ``other`` on the same input; its outcome is the result.

        >>> from combinators import fail, pure, run_sync
        >>> run_sync(fail("down").fallback(pure(str.upper)), "backup")
        <Success: BACKUP>
        """
        _require_agent(other, f"{self.name}.fallback() argument", self)
        return Fallback(self, other)

    def recover(self: Agent[_I, _O, _E], f: Callable[[_E], _O2]) -> Agent[_I, _O | _O2, Never]:
        """On failure, turn the error into a success value.

        >>> from combinators import fail, run_sync
        >>> run_sync(fail("no").recover(lambda e: f"recovered from {e}"), None)
        <Success: recovered from no>
        """
        _require_callable(f, f"{self.name}.recover()")
        return Recover(self, f)

    def timeout(self, seconds: float | timedelta) -> Agent[_In_contra, _Out_co, _Err_co | TimedOut]:
        """Cancel the subtree after ``seconds`` of trio time; fail with ``TimedOut``.

        >>> from combinators.testing import fake, run_virtual
        >>> result, elapsed = run_virtual(fake("slow", delay=10, value=1).timeout(2), None)
        >>> result.failure().seconds, elapsed
        (2.0, 2.0)
        """
        return Timeout(self, _seconds(seconds, f"{self.name}.timeout()", "the timeout"))

    def retry(
        self,
        times: int,
        *,
        backoff: Backoff | None = None,
        when: Callable[[_Err_co], bool] | None = None,
        deadline: float | timedelta | None = None,
    ) -> Agent[_In_contra, _Out_co, _Err_co]:
        """Up to ``times`` more attempts after a failure (see :class:`Backoff`).

        ``when`` picks the errors worth retrying; ``deadline`` bounds the
        whole (trio-time) span of attempts and waits.  An error with a
        ``retry_after`` attribute waits at least that long.

        >>> from combinators import Backoff, run_sync
        >>> from combinators.testing import fake, Calls
        >>> calls = Calls()
        >>> flaky = fake("flaky", error="busy", calls=calls)
        >>> run_sync(flaky.retry(2, backoff=Backoff(base=0)), "x")
        <Failure: busy>
        >>> len(calls.started)
        3
        """
        where = f"{self.name}.retry()"
        _count(times, where, "times", minimum=0)
        if backoff is not None and not isinstance(backoff, Backoff):
            msg = f"{where}: backoff must be a Backoff, got {backoff!r}"
            raise BuildError(msg)
        if when is not None:
            _require_callable(when, where)
        limit = None if deadline is None else _seconds(deadline, where, "deadline")
        return Retry(self, times, backoff or Backoff(), when, limit)

    def limit(self, n: int | PriorityLimiter) -> Agent[_In_contra, _Out_co, _Err_co]:
        """At most ``n`` leaves of this subtree run at once.

        With an int, each run gets a limiter of its own.  With a
        :class:`PriorityLimiter` you created, every tree and run that names
        it shares its slots (an API's concurrency is per key, for the whole
        process); priorities are honoured across them (docs/asyncio.md).

        >>> from combinators import PriorityLimiter, pure, run_sync
        >>> api = PriorityLimiter(5)
        >>> run_sync(pure(str.upper).limit(api), "hi")
        <Success: HI>
        """
        if not isinstance(n, int):
            if isinstance(n, PriorityLimiter):
                return Limit(self, n.total, n)
        return Limit(self, _count(n, f"{self.name}.limit()", "n", alternative="; or pass a PriorityLimiter, to share one"))

    def priority(self, priority: Priority) -> Agent[_In_contra, _Out_co, _Err_co]:
        """Admission order of this subtree's leaves when they wait on a limiter.

        Higher first, then first come; see :class:`Priority`.

        >>> from combinators import Priority, pure, run_sync
        >>> urgent = pure(str.upper).priority(Priority.HIGH)
        >>> run_sync((urgent | pure(str.lower)).limit(1), "Ab")
        <Success: ('AB', 'ab')>
        """
        if not isinstance(priority, Priority):
            msg = f"{self.name}.priority(): expected a Priority, got {priority!r}"
            raise BuildError(msg)
        return Prioritized(self, priority)

    def on(self, executor: Executor) -> Agent[_In_contra, _Out_co, _Err_co]:
        """Run this subtree's sync leaf functions on ``executor`` (``processes()``, ...).

        Each such function is checked now (a process pool refuses one that
        does not pickle); async leaves stay in the trio task.

        >>> from combinators import in_task, pure, run_sync
        >>> run_sync(pure(sum).on(in_task()), [1, 2, 3])
        <Success: 6>
        """
        return on(self, executor)

    def rate(
        self,
        calls: float | StartWindow,
        *,
        per: float | timedelta | None = None,
        weight: Callable[[Any], float] | None = None,
    ) -> Agent[_In_contra, _Out_co, _Err_co]:
        """At most ``calls`` leaf starts in any ``per``-second window of trio time (default 1 s).

        A sliding log of the starts in the last ``per`` seconds, not a
        refilling token bucket (docs/resources.md says why).  ``weight(x)``
        lets the start of a leaf on input ``x`` count as several calls
        (tokens-per-minute limits of LLM providers); it must give a finite
        number >= 0, and a start heavier than ``calls`` goes alone once the
        window is empty.  Given a :class:`StartWindow` you created instead
        of ``calls``, every tree and run that names it shares that one
        window (docs/asyncio.md).

        >>> from combinators import each, pure, run_sync
        >>> run_sync(each(pure(len)).rate(100, per=60, weight=len), ["ab", "cde"])
        <Success: [2, 3]>
        """
        where = f"{self.name}.rate()"
        if not isinstance(calls, int | float):
            if isinstance(calls, StartWindow):
                if per is not None:
                    msg = f"{where}: a shared StartWindow has its own period; drop per={per!r}"
                    raise BuildError(msg)
                if weight is not None:
                    _require_callable(weight, where)
                return Rate(self, float(calls.calls), float(calls.per), weight, calls)
        if per is None:
            per = 1.0
        limit = _real(calls, where, "calls", bound="> 0")
        if not limit > 0:
            msg = f"{where}: calls must be a finite number > 0, got {_show(calls)}"
            raise BuildError(msg)
        window = _seconds(per, where, "per")
        if weight is not None:
            _require_callable(weight, where)
        return Rate(self, limit, window, weight)

    def bind(
        self,
        f: Callable[[_Out_co], Agent[_Out_co, _O2, _E2]],
        *,
        key: Callable[[_Out_co], str] | None = None,
    ) -> Agent[_In_contra, _O2, _Err_co | _E2]:
        """Run this agent, then the agent ``f`` picks for its success value, on that value.

        For choices a static ``switch`` cannot express.  The chosen agent is
        known only at run time: it is compiled then (once per distinct agent
        per run), drawings show this node without it, and it runs at the path
        ``.../bind[<key>]``, keyed by the chosen agent's name or ``key(value)``.

        >>> from combinators import pure, run_sync
        >>> short, long = pure(lambda n: f"{n} is short").named("short"), pure(lambda n: f"{n} is long").named("long")
        >>> run_sync(pure(len).bind(lambda n: short if n < 5 else long), "abc")
        <Success: 3 is short>
        """
        return make_bind(self, f, key)

    # -- spend (docs/spend.md) ----------------------------------------------

    def costs(self, usage: Usage) -> Agent[_In_contra, _Out_co, _Err_co]:
        """Declare the most one call of this leaf may use (reserved under a budget).

        Only leaves declare: a composite's usage is its leaves'.

        >>> from combinators import Usage, pure
        >>> pure(str.upper).costs(Usage(calls=1, cost=0.02)).spend
        Usage(calls=1, input_tokens=None, output_tokens=None, cost=0.02)
        """
        where = f"{self.name}.costs()"
        if not isinstance(usage, Usage):
            msg = f"{where}: expected a Usage, got {type(usage).__name__} {usage!r}"
            raise BuildError(msg)
        if not isinstance(self, Leaf):
            msg = (
                f"{where}: only a leaf (agent(), lift(), pure()) declares costs, got a {self.kind} node; "
                f"declare them on its leaves"
            )
            raise BuildError(msg)
        return attrs.evolve(self, spend=usage)

    def budget(self, limit: Usage | Budget) -> Agent[_In_contra, _Out_co, _Err_co | OverBudget]:
        """Reserve every leaf call below in ``limit`` before it starts; fail with ``OverBudget`` if it does not fit.

        A ``Usage`` is a fresh budget for each run; a ``Budget`` object is
        shared by every tree and run it is attached to.  A budget that limits
        a field no leaf below declares (``.costs``) is refused now.

        >>> from combinators import Usage, pure, run_sync
        >>> step = pure(str.upper).costs(Usage(cost=0.5))
        >>> run_sync((step >> step >> step).budget(Usage(cost=1.0)), "a").failure().asked
        Usage(calls=None, input_tokens=None, output_tokens=None, cost=0.5)
        """
        where = f"{self.name}.budget()"
        if isinstance(limit, Usage):
            Budget(limit, name="budget")  # checks the limit itself
            check_budget(self, limit, where)
        elif isinstance(limit, Budget):
            check_budget(self, limit.limit, where)
        else:
            msg = f"{where}: expected a Usage or a Budget, got {type(limit).__name__} {limit!r}"
            raise BuildError(msg)
        return Budgeted(self, limit)

    def cache(
        self, store: Cache, *, ttl: float | timedelta | None = None, failures: bool = False
    ) -> Agent[_In_contra, _Out_co, _Err_co]:
        """Answer this leaf from ``store`` when it already ran on an equal input.

        Keyed by the leaf's name, its ``versioned()`` version and the input's
        hash; successes are kept (and permanent failures with
        ``failures=True``) for ``ttl`` seconds (``None``: for ever).  A hit
        reserves and charges nothing.  Identical calls in flight at once run
        once.  See docs/spend.md.

        >>> from combinators import Cache, pure, run_sync
        >>> seen = []
        >>> def shout(text: str) -> str:
        ...     seen.append(text)
        ...     return text.upper()
        >>> cached = pure(shout).cache(Cache.memory())
        >>> run_sync(cached, "hi"), run_sync(cached, "hi"), seen
        (<Success: HI>, <Success: HI>, ['hi'])
        """
        return cached_leaf(self, store, ttl=None if ttl is None else _seconds(ttl, f"{self.name}.cache()", "ttl"), failures=failures)


class _Ref:
    """A reference to an earlier node in a pickled tree's table."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Ref, (self.index,))


def _agent_values(node: Agent[Any, Any, Any]) -> Iterator[Agent[Any, Any, Any]]:
    """The agents held directly in ``node``'s fields (a group's prefix, not its operands)."""
    for field in attrs.fields(type(node)):
        value = getattr(node, field.name)
        if isinstance(value, Agent):
            yield value
        elif isinstance(value, tuple) and value and isinstance(value[0], Agent):
            yield from value


def _tree_table(root: Agent[Any, Any, Any]) -> tuple[tuple[type[Any], tuple[object, ...]], ...]:
    """``root``'s nodes in post-order as (class, field values), agents as ``_Ref`` markers."""
    index: dict[int, int] = {}
    table: list[tuple[type[Any], tuple[object, ...]]] = []
    stack: list[tuple[Agent[Any, Any, Any], bool]] = [(root, False)]
    while stack:
        node, ready = stack.pop()
        if id(node) in index:
            continue
        if not ready:
            stack.append((node, True))
            stack.extend((kid, False) for kid in _agent_values(node) if id(kid) not in index)
            continue
        values: list[object] = []
        for field in attrs.fields(type(node)):
            value = getattr(node, field.name)
            if field.name in ("_hash", "_cache"):
                value = None  # recomputed on load: str hashes differ between processes
            elif isinstance(value, Agent):
                value = _Ref(index[id(value)])
            elif isinstance(value, tuple) and value and isinstance(value[0], Agent):
                value = tuple(_Ref(index[id(v)]) for v in value)
            values.append(value)
        index[id(node)] = len(table)
        table.append((type(node), tuple(values)))
    return tuple(table)


def _unpickle_tree(table: tuple[tuple[type[Any], tuple[object, ...]], ...]) -> Agent[Any, Any, Any]:
    """The tree ``_tree_table`` wrote, rebuilt without running any node's checks again."""
    made: list[Agent[Any, Any, Any]] = []
    for cls, values in table:
        node = object.__new__(cls)
        for field, value in zip(attrs.fields(cls), values, strict=True):
            if isinstance(value, _Ref):
                value = made[value.index]
            elif isinstance(value, tuple) and value and isinstance(value[0], _Ref):
                value = tuple(made[r.index] for r in value)
            object.__setattr__(node, field.name, value)
        object.__setattr__(node, "_hash", _structural_hash(node))
        made.append(node)
    return made[-1]


# --------------------------------------------------------------------------
# Leaves


class LeafMode(enum.Enum):
    """How a leaf's function reports failure."""

    RESULT = "agent"  # async fn returning a Result; exceptions are bugs
    LIFT = "lift"  # fn returning a value; exceptions become Crashed
    PURE = "pure"  # sync fn returning a value; exceptions are bugs


@final
@attrs.frozen(eq=False, repr=False)
class Leaf(Agent[_In_contra, _Out_co, _Err_co]):
    """A leaf: one function, run by the interpreter."""

    fn: Callable[[Any], Any]
    mode: LeafMode
    is_async: bool
    #: What one call may use (``.costs``); None: nothing declared.
    spend: Usage | None = attrs.field(default=None, kw_only=True)
    #: Where its outcomes are cached (``.cache``); None: not cached.
    cached: Any = attrs.field(default=None, kw_only=True)
    kind: ClassVar[str] = "leaf"

    def _default_name(self) -> str:
        return _fn_name(self.fn)

    def _repr_parts(self) -> list[object]:
        text = f"{self.mode.value}({_fn_name(self.fn)})"
        if self.label is not None:
            text += f".named({self.label!r})"
        if self.spend is not None:
            text += f".costs({self.spend!r})"
        if self.cached is not None:
            text += f".cache({self.cached!r})"
        return [text]


@final
@attrs.frozen(eq=False, repr=False)
class Const(Agent[_In_contra, _Out_co, _Err_co]):
    """A leaf that ignores its input: ``succeed(v)`` or ``fail(e)``."""

    value: Any
    ok: bool
    kind: ClassVar[str] = "const"

    def _default_name(self) -> str:
        return "succeed" if self.ok else "fail"

    def _repr_parts(self) -> list[object]:
        text = f"{self._default_name()}({self.value!r})"
        if self.label is not None:
            text += f".named({self.label!r})"
        return [text]


def _is_async_callable(fn: object) -> bool:
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - callable objects
    return call is not None and inspect.iscoroutinefunction(call)


@overload
def agent(fn: Callable[[_I], Awaitable[Result[_O, _E]]], /) -> Agent[_I, _O, _E]: ...
@overload
def agent(
    *, name: str
) -> Callable[[Callable[[_I], Awaitable[Result[_O, _E]]]], Agent[_I, _O, _E]]: ...
def agent(fn: Any = None, /, *, name: str | None = None) -> Any:
    """Make a leaf from ``async def fn(x) -> Result[Out, Err]``.

    An exception raised by ``fn`` is a bug: it propagates out of ``run`` as
    itself, with the node path added as a note.  Use :func:`lift` for
    functions whose exceptions are expected.

    >>> from returns.result import Success
    >>> @agent
    ... async def parse(text: str) -> Result[int, str]:
    ...     return Success(int(text))
    >>> parse.name
    'parse'
    """
    if fn is None:
        def decorate(f: Any) -> Any:
            made = agent(f)
            return made.named(name) if name is not None else made

        return decorate
    if not callable(fn):
        msg = f"agent() expects an async function, got {type(fn).__name__} {fn!r}"
        raise AgentTypeError(msg)
    if not _is_async_callable(fn):
        msg = (
            f"agent() expects an `async def` returning a Result, got the sync "
            f"function {_fn_name(fn)!r}; use pure() for a plain function "
            f"or lift() for one that may raise"
        )
        raise AgentTypeError(msg)
    return Leaf(fn, LeafMode.RESULT, True, label=None if name is None else _check_name(name, "agent()"))


@overload
def lift(fn: Callable[[_I], Coroutine[Any, Any, _O]], /) -> Agent[_I, _O, Crashed]: ...
@overload
def lift(fn: Callable[[_I], _O], /) -> Agent[_I, _O, Crashed]: ...
def lift(fn: Callable[[Any], Any], /) -> Agent[Any, Any, Crashed]:
    """Make a leaf from a function (sync or async) that may raise.

    Its return value is the success value; an ``Exception`` it raises becomes
    ``Failure(Crashed(exception, path))``.  ``BaseException``\\ s such as
    ``trio.Cancelled`` pass through untouched.

    >>> from combinators import run_sync
    >>> parse = lift(int)
    >>> run_sync(parse, "42")
    <Success: 42>
    >>> run_sync(parse, "forty-two").failure().exception
    ValueError("invalid literal for int() with base 10: 'forty-two'")
    """
    if not callable(fn):
        msg = f"lift() expects a function, got {type(fn).__name__} {fn!r}"
        raise AgentTypeError(msg)
    if inspect.isasyncgenfunction(fn) or inspect.isgeneratorfunction(fn):
        msg = (
            f"lift() expects a function that returns its value, got the generator function "
            f"{_fn_name(fn)!r}; use stream() to run an agent over many inputs"
        )
        raise AgentTypeError(msg)
    return Leaf(fn, LeafMode.LIFT, _is_async_callable(fn))


def pure(fn: Callable[[_I], _O], /) -> Agent[_I, _O, Never]:
    """Make a leaf from a plain function that cannot fail.

    An exception it raises anyway is a bug and propagates out of ``run``.

    >>> from combinators import run_sync
    >>> run_sync(pure(str.title), "ada lovelace")
    <Success: Ada Lovelace>
    """
    if not callable(fn):
        msg = f"pure() expects a function, got {type(fn).__name__} {fn!r}"
        raise AgentTypeError(msg)
    if _is_async_callable(fn):
        msg = f"pure() expects a plain (sync) function, got the async function {_fn_name(fn)!r}; use lift() or agent()"
        raise AgentTypeError(msg)
    return Leaf(fn, LeafMode.PURE, False)


def succeed(value: _O, /) -> Agent[object, _O, Never]:
    """An agent that ignores its input and succeeds with ``value``.

    A default, a stub in tests, or the start of a pipeline that needs no input.

    >>> from combinators import pure, run_sync
    >>> run_sync(succeed(20) >> pure(lambda n: n + 1), "ignored")
    <Success: 21>
    """
    return Const(value, True)


def fail(error: _E, /) -> Agent[object, Never, _E]:
    """An agent that ignores its input and fails with ``error``.

    For tests and for branches that must refuse (``switch(..., default=fail(...))``).

    >>> from combinators import pure, run_sync
    >>> run_sync(fail("no route") >> pure(str.upper), "x")
    <Failure: no route>
    """
    return Const(error, False)


# --------------------------------------------------------------------------
# Combinators


@final
@attrs.frozen(eq=False, repr=False)
class Then(Agent[_In_contra, _Out_co, _Err_co]):
    """``first >> second``."""

    first: Agent[Any, Any, Any]
    second: Agent[Any, Any, Any]
    kind: ClassVar[str] = "seq"

    def __attrs_post_init__(self) -> None:
        # The flag _nesting reads for a right operand: set before it runs.
        object.__setattr__(self, "_handler", _joins(self.first) or _joins(self.second))
        super().__attrs_post_init__()

    def _nesting(self) -> int:
        second = self.second
        # A right operand holding a handler is a nested step (_chain.flatten).
        right = second._depth if _joins(second) else _in_loop(second, _CHAIN_FAMILY)
        return max(_in_loop(self.first, _CHAIN_FAMILY), right) + 1

    def _repr_parts(self) -> list[object]:
        parts: list[object] = ["(", self.first, " >> ", self.second, ")"]
        if self.label is not None:
            parts.append(f".named({self.label!r})")
        return parts


@final
@attrs.frozen(eq=False, repr=False)
class Parallel(Agent[_In_contra, _Out_co, _Err_co], Generic[_In_contra, _Out_co, _Res, _Err_co]):
    """``a | b | ...``: a group run at once, fail-fast, outputs as a flat tuple.

    Its type is ``Parallel[In, tuple[O1, O2, ...], tuple[Result[O1, E1],
    Result[O2, E2], ...], E1 | E2 | ...]``: the outputs (what ``>>`` passes
    on), each operand's own outcome type (what ``collect`` keeps), and the
    union of the errors (what the fail-fast group can fail with).

    Stored as a persistent list (``prefix`` group plus ``last`` operand) so
    that growing a group by one operand costs O(1), not a copy.  Exported as
    the type of ``|`` (to annotate a group), not to be built by hand.

    >>> from combinators import Parallel, pure, run_sync
    >>> group = pure(str.upper) | pure(str.lower) | pure(len)
    >>> isinstance(group, Parallel), len(group.operands)
    (True, 3)
    >>> run_sync(group, "Ab")
    <Success: ('AB', 'ab', 2)>
    """

    prefix: Parallel[Any, Any, Any, Any] | Agent[Any, Any, Any]
    last: Agent[Any, Any, Any]
    size: int
    kind: ClassVar[str] = "par"

    def _nesting(self) -> int:
        # O(1) as the group grows: the prefix group already counted itself.
        before = self.prefix._depth if self.size > 2 else self.prefix._depth + 1
        return max(before, self.last._depth + 1)

    @property
    def operands(self) -> tuple[Agent[Any, Any, Any], ...]:
        """The operands in order (the flat group)."""
        out: list[Agent[Any, Any, Any]] = []
        node: Agent[Any, Any, Any] = self
        for _ in range(self.size - 1):
            assert isinstance(node, Parallel)
            out.append(node.last)
            node = node.prefix
        out.append(node)
        out.reverse()
        return tuple(out)

    def children(self) -> tuple[Agent[Any, Any, Any], ...]:
        return self.operands

    def _repr_parts(self) -> list[object]:
        parts: list[object] = ["("]
        for i, kid in enumerate(self.operands):
            if i:
                parts.append(" | ")
            parts.append(kid)
        parts.append(")" if self.label is None else f").named({self.label!r})")
        return parts


def _is_step_list(node: Agent[Any, Any, Any]) -> bool:
    """Is ``node`` a sequence node whose steps join an enclosing sequence's loop?"""
    return node.label is None and isinstance(node, Then | Transform | MapError | Recover | Fallback)


def _in_loop(node: Agent[Any, Any, Any], family: tuple[type[Any], ...]) -> int:
    """The nesting ``node`` adds as an operand of a sequence node of ``family``.

    An unlabelled ``>>`` inside ``>>``, or a handler/transform around
    another, is walked by the same loop (``_chain.flatten`` when running,
    ``_mermaid`` when drawing): its own level is not one more.  Across the
    two (``>>`` alternating with handlers) compiling and running still loop
    and so does the depth; drawing recurses there and refuses such a tree
    with a clear error past its limit (``to_mermaid``).
    """
    return node._depth - 1 if node.label is None and isinstance(node, family) else node._depth


def _joins(node: Agent[Any, Any, Any]) -> bool:
    """Does ``node`` bring a handler into an enclosing sequence's step list?"""
    return _is_step_list(node) and node._handler


def then(first: Agent[_I, _O, _E], second: Agent[_O, _O2, _E2]) -> Agent[_I, _O2, _E | _E2]:
    """Sequence: run ``first``; on success run ``second`` on its value.

    A failure of ``first`` is the result and ``second`` never runs.
    ``then(a, b)`` is ``a >> b``.

    >>> from combinators import pure, run_sync
    >>> run_sync(then(pure(str.split), pure(len)), "to be or not")
    <Success: 4>
    """
    _require_agent(first, "left operand of >>", None)
    _require_agent(second, "right operand of >>", first)
    return Then(first, second)


def both(first: Agent[_I, _O, _E], second: Agent[_I, _O2, _E2]) -> Parallel[_I, Any, Any, Any]:
    """Parallel group of two operands, or ``first``'s group grown by one.

    Fail-fast: the earliest failure (in trio time) cancels the others and is
    the result.  The public, precisely typed spelling is ``first | second``.

    >>> from combinators import pure, run_sync
    >>> run_sync(both(pure(min), pure(max)), [3, 1, 2])
    <Success: (1, 3)>
    """
    _require_agent(first, "left operand of |", None)
    _require_agent(second, "right operand of |", first)
    if isinstance(first, Parallel) and first.label is None:
        return Parallel(first, second, first.size + 1)
    return Parallel(first, second, 2)


@final
@attrs.frozen(eq=False, repr=False)
class Transform(Agent[_In_contra, _Out_co, _Err_co]):
    """``inner.transform(f)``."""

    inner: Agent[Any, Any, Any]
    f: Callable[[Any], Any]
    kind: ClassVar[str] = "transform"
    _wraps: ClassVar[str | None] = "inner"

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_handler", _joins(self.inner))
        super().__attrs_post_init__()

    def _nesting(self) -> int:
        return _in_loop(self.inner, _CHAIN_FAMILY) + 1


@final
@attrs.frozen(eq=False, repr=False)
class MapError(Agent[_In_contra, _Out_co, _Err_co]):
    """``inner.map_error(f)``."""

    inner: Agent[Any, Any, Any]
    f: Callable[[Any], Any]
    kind: ClassVar[str] = "map_error"
    _wraps: ClassVar[str | None] = "inner"

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_handler", True)
        super().__attrs_post_init__()

    def _nesting(self) -> int:
        return _in_loop(self.inner, _CHAIN_FAMILY) + 1


@final
@attrs.frozen(eq=False, repr=False)
class Fallback(Agent[_In_contra, _Out_co, _Err_co]):
    """``primary.fallback(backup)``."""

    primary: Agent[Any, Any, Any]
    backup: Agent[Any, Any, Any]
    kind: ClassVar[str] = "fallback"
    _wraps: ClassVar[str | None] = "primary"

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_handler", True)
        super().__attrs_post_init__()

    def _nesting(self) -> int:
        # The backup is a nested step; the primary's steps join the loop.
        return max(_in_loop(self.primary, _CHAIN_FAMILY), self.backup._depth) + 1


@final
@attrs.frozen(eq=False, repr=False)
class Recover(Agent[_In_contra, _Out_co, _Err_co]):
    """``inner.recover(f)``."""

    inner: Agent[Any, Any, Any]
    f: Callable[[Any], Any]
    kind: ClassVar[str] = "recover"
    _wraps: ClassVar[str | None] = "inner"

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_handler", True)
        super().__attrs_post_init__()

    def _nesting(self) -> int:
        return _in_loop(self.inner, _CHAIN_FAMILY) + 1


@final
@attrs.frozen(eq=False, repr=False)
class Timeout(Agent[_In_contra, _Out_co, _Err_co]):
    """``inner.timeout(seconds)``."""

    inner: Agent[Any, Any, Any]
    seconds: float
    kind: ClassVar[str] = "timeout"
    _wraps: ClassVar[str | None] = "inner"


@final
@attrs.frozen(eq=False, repr=False)
class Retry(Agent[_In_contra, _Out_co, _Err_co]):
    """``inner.retry(times, ...)``."""

    inner: Agent[Any, Any, Any]
    times: int
    backoff: Backoff
    when: Callable[[Any], bool] | None
    deadline: float | None
    kind: ClassVar[str] = "retry"
    _wraps: ClassVar[str | None] = "inner"


@final
@attrs.frozen(eq=False, repr=False)
class Limit(Agent[_In_contra, _Out_co, _Err_co]):
    """``inner.limit(n)``."""

    inner: Agent[Any, Any, Any]
    n: int
    #: The limiter every run shares (``.limit(limiter)``), or None: one per run.
    #: Compared by identity, like the limiter itself.
    shared: PriorityLimiter | None = None
    kind: ClassVar[str] = "limit"
    _wraps: ClassVar[str | None] = "inner"


@final
@attrs.frozen(eq=False, repr=False)
class Prioritized(Agent[_In_contra, _Out_co, _Err_co]):
    """``inner.priority(p)``."""

    inner: Agent[Any, Any, Any]
    value: Priority
    kind: ClassVar[str] = "priority"
    _wraps: ClassVar[str | None] = "inner"


@final
@attrs.frozen(eq=False, repr=False)
class Rate(Agent[_In_contra, _Out_co, _Err_co]):
    """``inner.rate(calls, per=..., weight=...)``."""

    inner: Agent[Any, Any, Any]
    calls: float
    per: float
    weight: Callable[[Any], float] | None
    #: The window every run shares (``.rate(window)``), or None: one per run.
    shared: StartWindow | None = None
    kind: ClassVar[str] = "rate"
    _wraps: ClassVar[str | None] = "inner"



@final
@attrs.frozen(eq=False, repr=False)
class Budgeted(Agent[_In_contra, _Out_co, _Err_co]):
    """``inner.budget(limit)``: a ``Usage`` (one budget per run) or a shared ``Budget``."""

    inner: Agent[Any, Any, Any]
    limit: Any
    kind: ClassVar[str] = "budget"
    _wraps: ClassVar[str | None] = "inner"


#: Sequence nodes drawn as one spine (see ``_in_loop``).
_STEP_KINDS: Final = (Transform, MapError, Recover, Fallback)
#: Every node ``_chain.flatten`` walks in one loop: nested in each other
#: they add no level of compiling or running.
_CHAIN_FAMILY: Final = (Then, *_STEP_KINDS)


# --------------------------------------------------------------------------
# Nodes built by methods: bind, on


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


@final
@attrs.frozen(eq=False, repr=False)
class OnExecutor(Agent[_In_contra, _Out_co, _Err_co]):
    """``inner.on(executor)``: the sync leaves of ``inner`` run on ``executor``."""

    inner: Agent[Any, Any, Any]
    executor: Any
    kind: ClassVar[str] = "on"
    _wraps: ClassVar[str | None] = "inner"

    def _repr_parts(self) -> list[object]:
        parts: list[object] = [self.inner, f".on({self.executor.name})"]
        if self.label is not None:
            parts.append(f".named({self.label!r})")
        return parts


def _moved_leaves(root: Agent[Any, Any, Any]) -> list[Leaf[Any, Any, Any]]:
    """The sync leaves under ``root`` not under a nested ``.on()``."""
    out: list[Leaf[Any, Any, Any]] = []
    stack: list[Agent[Any, Any, Any]] = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, Leaf):
            if not node.is_async:
                out.append(node)
        elif not isinstance(node, OnExecutor):
            stack.extend(node.children())
    return out


def on(agent: Agent[_I, _O, _E], executor: Executor) -> Agent[_I, _O, _E]:
    """Run the sync leaf functions of ``agent`` on ``executor``.

    Every such function is checked now (for a process pool: that it
    pickles), so a bad one is refused before any run starts.  A subtree
    with no sync leaf at all is refused too: there would be nothing to move.
    """
    where = f"{agent.name}.on()"
    if not isinstance(executor, Executor):
        msg = f"{where}: expected an Executor such as processes() or ray_cluster(), got {executor!r}"
        raise AgentTypeError(msg)
    leaves = _moved_leaves(agent)
    if not leaves and not isinstance(executor, InTask):
        msg = (
            f"{where}: no sync leaf to run on {executor.name}: only pure() and "
            f"sync lift() functions move; async agents stay in the trio task"
        )
        raise BuildError(msg)
    for leaf in leaves:
        executor.check(leaf.fn, f"{where} leaf {leaf.name!r}")
    return OnExecutor(agent, executor)


# --------------------------------------------------------------------------
# What .cache and .budget check


def cached_leaf(node: _A, store: Cache, *, ttl: float | None, failures: bool) -> _A:
    """``node.cache(store, ...)``: the same leaf, answered from ``store`` when it can be."""
    where = f"{node.name}.cache()"
    if not isinstance(node, Leaf):
        msg = f"{where}: only a leaf (agent(), lift(), pure()) is cached, got a {node.kind} node; cache its leaves"
        raise BuildError(msg)
    if not isinstance(store, Cache):
        msg = f"{where}: expected a Cache (Cache.memory(), Cache.sqlite(path), ...), got {store!r}"
        raise BuildError(msg)
    made: Any = attrs.evolve(node, cached=CachePolicy(store, ttl, bool(failures)))
    result: _A = made
    return result


def declared_fields(tree: Agent[Any, Any, Any]) -> tuple[set[str], bool]:
    """The usage fields the leaves of ``tree`` declare, and whether some leaves are unknown (bind)."""
    fields: set[str] = set()
    unknown = False
    for node in tree.walk():
        if isinstance(node, Leaf) and node.spend is not None:
            fields.update(node.spend.set_fields())
        elif node.kind == "bind":
            unknown = True
    return fields, unknown


def check_budget(tree: Agent[Any, Any, Any], limit: Usage, where: str) -> None:
    """Refuse a budget that limits a field no leaf of ``tree`` declares."""
    declared, unknown = declared_fields(tree)
    if unknown:
        return  # leaves chosen at run time (bind) may declare it
    missing = [f for f in limit.set_fields() if f not in declared]
    if missing:
        msg = (
            f"{where}: the budget limits {', '.join(missing)}, which no leaf below declares; "
            f"declare it on the leaves with .costs(Usage({missing[0]}=...)) or drop it from the limit"
        )
        raise BuildError(msg)


# --------------------------------------------------------------------------
# Paths


def segments(children: tuple[Agent[Any, Any, Any], ...]) -> tuple[str, ...]:
    """Path suffixes (``"/name"``) for siblings, indexed where names repeat."""
    names = [c.name for c in children]
    seen: dict[str, int] = {}
    for n in names:
        seen[n] = seen.get(n, 0) + 1
    return tuple(f"/{n}[{i}]" if seen[n] > 1 else f"/{n}" for i, n in enumerate(names))
