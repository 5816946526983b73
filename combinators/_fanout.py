"""Fan-out and aggregation: ``each``, ``collect``, ``first_success``, ``vote``,
``average_confidence`` and ``aggregate`` (DESIGN §3).

Every node here maps onto **one trio nursery and its cancel scope**:

* ``each(a)`` runs ``a`` on every element of its input.  With no limit in
  force it starts one task per element; under a limit of capacity ``c`` it
  starts ``c`` long-lived worker tasks pulling from one shared iterator, so a
  fan-out over a million inputs holds ``c`` tasks, not a million parked on a
  limiter (DESIGN §5).  Fail-fast: the first failure cancels the scope.
* ``collect(...)`` keeps going: every outcome is kept as its own ``Result``.
* ``first_success`` cancels the scope at the first success; with ``hedge`` the
  nursery body is a launcher that starts each next operand only when the
  previous one has had ``hedge`` seconds without a success (or every started
  operand has already failed).
* ``vote`` cancels the scope the moment the majority is certain either way.

Element paths: element ``i`` of ``each(a)`` at path ``p`` runs at
``f"{p}/{a.name}[{i}]"``.

The arity overloads below were generated at development time by a small
script (arity 1..6 for ``first_success``/``vote``, 1..4 for
``average_confidence``, 2..8 for ``collect`` of a ``|`` group) and are
committed as text; a variadic overload catches longer calls with joined
types.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence, Sized
from datetime import timedelta
from typing import Any, ClassVar, Generic, Never, Protocol, TypeVar, TypeVarTuple, Unpack, final, overload

import attrs
import trio
from returns.result import Failure, Result, Success

from ._cancel import keep_first_crash, open_nursery
from ._exceptions import AgentTypeError, AllFailed, BuildError, NoMajority, NodeCancelled
from ._limits import PriorityLimiter
from ._expr import Agent, LeafMode, Limit, Parallel, _require_agent
from ._check import _fn_name, _require_callable, _seconds
from ._observe import observed
from ._plan import Compiler, Env, bare_leaf, compiles, segments
from ._notes import not_a_result, note_function, note_node
from ._types import Runner, _Err_co, _In_contra, _Out_co

_I = TypeVar("_I")
_O = TypeVar("_O")
_E = TypeVar("_E")
_R = TypeVar("_R")
_RE = TypeVar("_RE")
_Rs = TypeVarTuple("_Rs")
_O1 = TypeVar("_O1")
_O2 = TypeVar("_O2")
_O3 = TypeVar("_O3")
_O4 = TypeVar("_O4")
_O5 = TypeVar("_O5")
_O6 = TypeVar("_O6")
_E1 = TypeVar("_E1")
_E2 = TypeVar("_E2")
_E3 = TypeVar("_E3")
_E4 = TypeVar("_E4")
_E5 = TypeVar("_E5")
_E6 = TypeVar("_E6")
_C_co = TypeVar("_C_co", covariant=True)


class HasConfidence(Protocol):
    """What ``average_confidence`` needs from an output: a ``confidence`` float.

    Any class with that attribute (or property) is one; mypy checks it.

    >>> import attrs
    >>> @attrs.frozen
    ... class Guess:
    ...     label: str
    ...     confidence: float
    >>> guess: HasConfidence = Guess("cat", 0.9)
    >>> guess.confidence
    0.9
    """

    @property
    def confidence(self) -> float: ...


_HC = TypeVar("_HC", bound=HasConfidence)
_HC1 = TypeVar("_HC1", bound=HasConfidence)
_HC2 = TypeVar("_HC2", bound=HasConfidence)
_HC3 = TypeVar("_HC3", bound=HasConfidence)
_HC4 = TypeVar("_HC4", bound=HasConfidence)


@attrs.frozen
class Confident(Generic[_C_co]):
    """The outcome of ``average_confidence``: the mean and the outputs it averages.

    ``outputs`` are the successful outputs in operand order; ``failed`` counts
    the operands that failed (their errors are not kept).

    >>> import attrs
    >>> from combinators import fail, succeed, run_sync
    >>> @attrs.frozen
    ... class Guess:
    ...     confidence: float
    >>> run_sync(average_confidence(succeed(Guess(0.25)), succeed(Guess(0.75)), fail("?")), None)
    <Success: Confident(mean=0.5, outputs=(Guess(confidence=0.25), Guess(confidence=0.75)), failed=1)>
    """

    mean: float
    outputs: tuple[_C_co, ...]
    failed: int = 0


# --------------------------------------------------------------------------
# Nodes


@final
@attrs.frozen(eq=False, repr=False)
class Each(Agent[Iterable[_In_contra], list[_Out_co], _Err_co], Generic[_In_contra, _Out_co, _Err_co]):
    """``each(inner)``: ``inner`` on every element, results in input order."""

    inner: Agent[Any, Any, Any]
    #: The most elements it takes (``each(..., at_most=n)``), for ``estimate``; None: any number.
    at_most: int | None = attrs.field(default=None, kw_only=True)
    kind: ClassVar[str] = "each"


@final
@attrs.frozen(eq=False, repr=False)
class Collect(Agent[_In_contra, _Out_co, _Err_co]):
    """``collect(inner)``: every outcome kept, never a failure of the whole."""

    inner: Agent[Any, Any, Any]
    kind: ClassVar[str] = "collect"


@final
@attrs.frozen(eq=False, repr=False)
class FirstSuccess(Agent[_In_contra, _Out_co, _Err_co]):
    """``first_success(*operands, hedge=...)``: a race won by the first success."""

    operands: tuple[Agent[Any, Any, Any], ...]
    hedge: float | None
    kind: ClassVar[str] = "first_success"


@final
@attrs.frozen(eq=False, repr=False)
class Vote(Agent[_In_contra, _Out_co, _Err_co]):
    """``vote(*operands, key=...)``: the strict majority among the operands."""

    operands: tuple[Agent[Any, Any, Any], ...]
    key: Callable[[Any], Hashable] | None
    kind: ClassVar[str] = "vote"


@final
@attrs.frozen(eq=False, repr=False)
class AverageConfidence(Agent[_In_contra, _Out_co, _Err_co]):
    """``average_confidence(*operands)``: the mean ``confidence`` of the successes."""

    operands: tuple[Agent[Any, Any, Any], ...]
    kind: ClassVar[str] = "average_confidence"


@final
@attrs.frozen(eq=False, repr=False)
class Aggregate(Agent[_In_contra, _Out_co, _Err_co]):
    """``aggregate(operands, f)``: ``f`` over every outcome, in operand order."""

    operands: tuple[Agent[Any, Any, Any], ...]
    f: Callable[[tuple[Result[Any, Any], ...]], Result[Any, Any]]
    kind: ClassVar[str] = "aggregate"


# --------------------------------------------------------------------------
# Constructors


def _operands(agents: tuple[object, ...], what: str) -> tuple[Agent[Any, Any, Any], ...]:
    if not agents:
        msg = f"{what}() needs at least one agent, got none"
        raise BuildError(msg)
    for i, a in enumerate(agents):
        _require_agent(a, f"{what}() argument {i + 1}", None)
    return tuple(agents)  # type: ignore[arg-type]


def each(inner: Agent[_I, _O, _E], /, *, at_most: int | None = None) -> Each[_I, _O, _E]:
    """Run ``inner`` on every element of an iterable input, at once up to the limits.

    **Fail-fast:** the first failure cancels every other element and is the
    whole result, so one bad input sinks the batch.  For batch work, where
    each input's outcome matters on its own, use ``collect(each(inner))``:
    it never fails and gives one ``Result`` per input.

    Results come back as a list in input order; "first" is in trio time, as
    for ``|``.  Under a limit of capacity ``c`` (``.limit(c)`` or
    ``run(max_concurrency=c)``) at most ``c`` elements are in flight, each
    started only when a slot is free, so memory grows with ``c``, not with
    the number of inputs.  Element ``i`` runs at ``<path>/<inner name>[i]``.
    ``at_most=n`` states the most elements an input may have, so that
    :func:`estimate` can bound a fan-out over a list known only at run time;
    an input with more is a bug (``ValueError`` once the ``n+1``-th element
    is pulled; elements not yet started then never start).

    >>> from returns.result import Failure, Success
    >>> from combinators import collect, lift, pure, run_sync
    >>> run_sync(each(pure(lambda x: x * 10)), [1, 2, 3])
    <Success: [10, 20, 30]>
    >>> inverse = lift(lambda x: 1 / x).named("inverse")
    >>> run_sync(each(inverse), [1, 0, 2])
    <Failure: Crashed(exception=ZeroDivisionError('division by zero'), path='each/inverse[1]')>
    >>> run_sync(collect(each(inverse)), [1, 0, 2])  # doctest: +ELLIPSIS
    <Success: [<Success: 1.0>, <Failure: Crashed(...path='collect/each/inverse[1]')>, <Success: 0.5>]>
    """
    _require_agent(inner, "each() argument", None)
    if at_most is not None and (isinstance(at_most, bool) or not isinstance(at_most, int) or at_most < 0):
        msg = f"each({inner.name}): at_most must be an int >= 0 or None, got {at_most!r}"
        raise BuildError(msg)
    return Each(inner, at_most=at_most)


# -- collect -------------------------------------------------------------------

@overload
def collect(  # type: ignore[overload-overlap]
    group: Parallel[_I, _O, tuple[Unpack[_Rs]], _E], /
) -> Agent[_I, tuple[Unpack[_Rs]], Never]: ...
@overload
def collect(group: Each[_I, _O, _E], /) -> Agent[Iterable[_I], list[Result[_O, _E]], Never]: ...  # type: ignore[overload-overlap]
@overload
def collect(group: Agent[_I, _O, _E], /) -> Agent[_I, Result[_O, _E], Never]: ...
def collect(group: Agent[Any, Any, Any], /) -> Agent[Any, Any, Never]:
    """Keep going: every outcome as its own ``Result``; the whole never fails.

    * ``collect(a | b | c)`` gives a tuple of Results, in operand order;
    * ``collect(each(a))`` gives a list of Results, in input order;
    * ``collect(a)`` for any other agent gives its one outcome as a value.

    Only an *unnamed* ``|`` group or ``each`` is spread: ``.named()`` makes a
    node opaque (its static type is then a plain ``Agent``), and the runtime
    follows the static type.  Unexpected exceptions still propagate.

    >>> from combinators import fail, pure, run_sync
    >>> run_sync(collect(pure(str.upper) | fail("no")), "hi")
    <Success: (<Success: HI>, <Failure: no>)>
    """
    _require_agent(group, "collect() argument", None)
    return Collect(group)


# -- first_success (overloads generated) ---------------------------------------


@overload
def first_success(
    a: Agent[_I, _O1, _E1], /, *, hedge: float | timedelta | None = None
) -> Agent[_I, _O1, AllFailed[_E1]]: ...
@overload
def first_success(
    a: Agent[_I, _O1, _E1], b: Agent[_I, _O2, _E2], /, *, hedge: float | timedelta | None = None
) -> Agent[_I, _O1 | _O2, AllFailed[_E1 | _E2]]: ...
@overload
def first_success(
    a: Agent[_I, _O1, _E1], b: Agent[_I, _O2, _E2], c: Agent[_I, _O3, _E3], /, *, hedge: float | timedelta | None = None
) -> Agent[_I, _O1 | _O2 | _O3, AllFailed[_E1 | _E2 | _E3]]: ...
@overload
def first_success(
    a: Agent[_I, _O1, _E1], b: Agent[_I, _O2, _E2], c: Agent[_I, _O3, _E3], d: Agent[_I, _O4, _E4], /, *, hedge: float | timedelta | None = None
) -> Agent[_I, _O1 | _O2 | _O3 | _O4, AllFailed[_E1 | _E2 | _E3 | _E4]]: ...
@overload
def first_success(
    a: Agent[_I, _O1, _E1], b: Agent[_I, _O2, _E2], c: Agent[_I, _O3, _E3], d: Agent[_I, _O4, _E4], e: Agent[_I, _O5, _E5], /, *, hedge: float | timedelta | None = None
) -> Agent[_I, _O1 | _O2 | _O3 | _O4 | _O5, AllFailed[_E1 | _E2 | _E3 | _E4 | _E5]]: ...
@overload
def first_success(
    a: Agent[_I, _O1, _E1], b: Agent[_I, _O2, _E2], c: Agent[_I, _O3, _E3], d: Agent[_I, _O4, _E4], e: Agent[_I, _O5, _E5], f: Agent[_I, _O6, _E6], /, *, hedge: float | timedelta | None = None
) -> Agent[_I, _O1 | _O2 | _O3 | _O4 | _O5 | _O6, AllFailed[_E1 | _E2 | _E3 | _E4 | _E5 | _E6]]: ...
@overload
def first_success(*agents: Agent[_I, _O, _E], hedge: float | timedelta | None = None) -> Agent[_I, _O, AllFailed[_E]]: ...
def first_success(*agents: Agent[Any, Any, Any], hedge: float | timedelta | None = None) -> Agent[Any, Any, AllFailed[Any]]:
    """A race: the first success wins and the other operands are cancelled at once.

    If every operand fails, the result is ``Failure(AllFailed(errors))`` with
    the errors in operand order.  With ``hedge=s`` the operands start one by
    one: the next starts ``s`` seconds (trio time) after the previous one
    started if no success has come by then, or at once when every operand
    started so far has failed.  Operands never needed never start (hedged
    requests: the second provider is paid for only when the first is slow).

    >>> from combinators import fail, succeed, run_sync
    >>> run_sync(first_success(fail("down"), succeed("mirror")), None)
    <Success: mirror>
    """
    operands = _operands(agents, "first_success")
    return FirstSuccess(operands, None if hedge is None else _seconds(hedge, "first_success()", "hedge"))


# -- vote (overloads generated) --------------------------------------------------


@overload
def vote(
    a: Agent[_I, _O1, _E1], /, *, key: Callable[[_O1], Hashable] | None = None
) -> Agent[_I, _O1, NoMajority]: ...
@overload
def vote(
    a: Agent[_I, _O1, _E1], b: Agent[_I, _O2, _E2], /, *, key: Callable[[_O1 | _O2], Hashable] | None = None
) -> Agent[_I, _O1 | _O2, NoMajority]: ...
@overload
def vote(
    a: Agent[_I, _O1, _E1], b: Agent[_I, _O2, _E2], c: Agent[_I, _O3, _E3], /, *, key: Callable[[_O1 | _O2 | _O3], Hashable] | None = None
) -> Agent[_I, _O1 | _O2 | _O3, NoMajority]: ...
@overload
def vote(
    a: Agent[_I, _O1, _E1], b: Agent[_I, _O2, _E2], c: Agent[_I, _O3, _E3], d: Agent[_I, _O4, _E4], /, *, key: Callable[[_O1 | _O2 | _O3 | _O4], Hashable] | None = None
) -> Agent[_I, _O1 | _O2 | _O3 | _O4, NoMajority]: ...
@overload
def vote(
    a: Agent[_I, _O1, _E1], b: Agent[_I, _O2, _E2], c: Agent[_I, _O3, _E3], d: Agent[_I, _O4, _E4], e: Agent[_I, _O5, _E5], /, *, key: Callable[[_O1 | _O2 | _O3 | _O4 | _O5], Hashable] | None = None
) -> Agent[_I, _O1 | _O2 | _O3 | _O4 | _O5, NoMajority]: ...
@overload
def vote(
    a: Agent[_I, _O1, _E1], b: Agent[_I, _O2, _E2], c: Agent[_I, _O3, _E3], d: Agent[_I, _O4, _E4], e: Agent[_I, _O5, _E5], f: Agent[_I, _O6, _E6], /, *, key: Callable[[_O1 | _O2 | _O3 | _O4 | _O5 | _O6], Hashable] | None = None
) -> Agent[_I, _O1 | _O2 | _O3 | _O4 | _O5 | _O6, NoMajority]: ...
@overload
def vote(*agents: Agent[_I, _O, _E], key: Callable[[_O], Hashable] | None = None) -> Agent[_I, _O, NoMajority]: ...
def vote(*agents: Agent[Any, Any, Any], key: Callable[[Any], Hashable] | None = None) -> Agent[Any, Any, NoMajority]:
    """The value a strict majority of the operands agree on.

    All operands run at once.  A value wins when more than half of *all*
    operands (failures count as abstentions) succeed with it, or with a
    value of equal ``key(value)`` when ``key`` is given (so answers can be
    normalised; keys must be hashable).  The vote ends and cancels the rest
    the moment the outcome can no longer change.  With no majority the
    result is ``Failure(NoMajority(candidates, failures))`` with the
    candidates seen so far, most votes first.  The winning value is the one
    of the lowest-numbered operand among the winners.

    >>> from combinators import succeed, run_sync
    >>> run_sync(vote(succeed("buy"), succeed("sell"), succeed("buy")), None)
    <Success: buy>
    """
    operands = _operands(agents, "vote")
    if key is not None:
        _require_callable(key, "vote() key")
    return Vote(operands, key)


# -- average_confidence (overloads generated) ----------------------------------------


@overload
def average_confidence(
    a: Agent[_I, _HC1, _E1], /
) -> Agent[_I, Confident[_HC1], AllFailed[_E1]]: ...
@overload
def average_confidence(
    a: Agent[_I, _HC1, _E1], b: Agent[_I, _HC2, _E2], /
) -> Agent[_I, Confident[_HC1 | _HC2], AllFailed[_E1 | _E2]]: ...
@overload
def average_confidence(
    a: Agent[_I, _HC1, _E1], b: Agent[_I, _HC2, _E2], c: Agent[_I, _HC3, _E3], /
) -> Agent[_I, Confident[_HC1 | _HC2 | _HC3], AllFailed[_E1 | _E2 | _E3]]: ...
@overload
def average_confidence(
    a: Agent[_I, _HC1, _E1], b: Agent[_I, _HC2, _E2], c: Agent[_I, _HC3, _E3], d: Agent[_I, _HC4, _E4], /
) -> Agent[_I, Confident[_HC1 | _HC2 | _HC3 | _HC4], AllFailed[_E1 | _E2 | _E3 | _E4]]: ...
@overload
def average_confidence(*agents: Agent[_I, _HC, _E]) -> Agent[_I, Confident[_HC], AllFailed[_E]]: ...
def average_confidence(*agents: Agent[Any, Any, Any]) -> Agent[Any, Confident[Any], AllFailed[Any]]:
    """Run all operands; the mean ``confidence`` of the successes, with the outputs.

    Outputs must have a ``confidence: float`` (:class:`HasConfidence`).  The
    result is ``Confident(mean, outputs, failed)``: the successful outputs in
    operand order and how many operands failed.  If every operand fails,
    ``Failure(AllFailed(errors))``.

    >>> import attrs
    >>> from combinators import succeed, run_sync
    >>> @attrs.frozen
    ... class Guess:
    ...     confidence: float
    >>> run_sync(average_confidence(succeed(Guess(0.5)), succeed(Guess(1.0))), None).unwrap().mean
    0.75
    """
    return AverageConfidence(_operands(agents, "average_confidence"))


def aggregate(
    agents: Sequence[Agent[_I, _O, _E]],
    f: Callable[[tuple[Result[_O, _E], ...]], Result[_R, _RE]],
    /,
) -> Agent[_I, _R, _RE]:
    """Run all ``agents`` at once; ``f`` turns every outcome into the result.

    ``f`` receives a tuple of Results in operand order (each operand runs to
    its end: nothing is cancelled early) and returns a ``Result``.  ``f`` is
    a plain function; an exception it raises is a bug and propagates.

    >>> from returns.result import Success
    >>> from combinators import fail, succeed, run_sync
    >>> count_ok = lambda rs: Success(sum(isinstance(r, Success) for r in rs))
    >>> run_sync(aggregate([succeed(1), fail("x"), succeed(3)], count_ok), None)
    <Success: 2>
    """
    if isinstance(agents, Agent) or not isinstance(agents, Iterable):
        msg = f"aggregate() expects a list or tuple of agents as its first argument, got {type(agents).__name__} {agents!r}"
        raise AgentTypeError(msg)
    operands = _operands(tuple(agents), "aggregate")
    _require_callable(f, "aggregate()")
    return Aggregate(operands, f)


# --------------------------------------------------------------------------
# Compile rules


def _short(x: object) -> str:
    text = repr(x)
    return text if len(text) <= 80 else text[:77] + "..."


def _outcomes(
    c: Compiler, operands: tuple[Agent[Any, Any, Any], ...], env: Env
) -> Callable[[Any, str], Awaitable[list[Result[Any, Any]]]]:
    """A coroutine function giving every operand's outcome, run in one nursery.

    Nothing is cancelled early; an unexpected exception cancels the siblings
    and propagates as itself.
    """
    runners_: list[Runner] = []
    for op in operands:  # a loop: no frame of its own per level (MAX_DEPTH)
        runners_.append(c.compile(op, env))
    runners = tuple(runners_)
    segs = segments(operands)
    n = len(runners)

    async def outcomes(x: Any, path: str) -> list[Result[Any, Any]]:
        out: list[Any] = [None] * n
        crash: list[BaseException] = []
        async with open_nursery() as nursery:
            scope = nursery.cancel_scope

            async def one(i: int) -> None:
                try:
                    out[i] = await runners[i](x, path + segs[i])
                except Exception as exc:
                    keep_first_crash(crash, scope, exc)

            for i in range(n):
                nursery.start_soon(one, i)
        if crash:
            raise crash[0]
        return out

    return outcomes


def _start_pulling(
    nursery: trio.Nursery,
    width: int | None,
    take: Callable[[], tuple[Any, ...] | None],
    one: Callable[..., Awaitable[None]],
) -> None:
    """Start the work ``take`` hands out: a task per piece, or ``width`` workers.

    With a width, each worker takes the next piece only when it is free, so
    a piece waiting for a slot holds no trio task (DESIGN §5).  ``take``
    never yields to trio, so the workers can share it; it gives None when
    there is nothing more to start.
    """
    if width is None:
        while (got := take()) is not None:
            nursery.start_soon(one, *got)
        return

    async def worker() -> None:
        while (got := take()) is not None:
            await one(*got)

    for _ in range(width):
        nursery.start_soon(worker)


def _each_runner(c: Compiler, node: Each[Any, Any, Any], env: Env, *, keep_going: bool) -> Runner:
    """``each``: one task per element, or ``c`` workers under a limit of capacity ``c``."""
    inner = c.compile(node.inner, env)
    name = node.inner.name
    width = env.innermost_capacity
    at_most = node.at_most
    if isinstance(node.inner, Limit):
        # each(a.limit(n)): every element passes through that one limiter,
        # so no more than n can run: n workers, not a task per element
        # (a shared limiter too: n is its size).
        width = node.inner.n if width is None else min(width, node.inner.n)
    # A bare agent leaf under the limiter in force (or none) is called
    # inline by each worker (see bare_worker).
    bare = bare_leaf(c, node.inner, env)
    if bare is not None and bare.mode is not LeafMode.RESULT:
        bare = None
    fn: Any = bare.fn if bare is not None else None
    leaf_name = node.inner.name
    limiter = env.limiters[0] if env.limiters else None
    # A run's own limiter may be taken without awaiting; a shared one checks
    # which trio run uses it first (SharedLimiter.acquire).
    own = limiter if isinstance(limiter, PriorityLimiter) else None
    priority = env.priority
    # A success the worker keeps by itself (each); collect keeps Results.
    fast_success = None if keep_going else Success

    async def run_each(x: Any, path: str) -> Result[Any, Any]:
        try:
            items = iter(x)
        except TypeError as exc:
            msg = f"each() at {path!r} needs an iterable input, got {type(x).__name__} {_short(x)}"
            raise TypeError(msg) from exc
        numbered = enumerate(items)
        prefix = f"{path}/{name}["
        out: list[Any] = []
        failure: list[Result[Any, Any]] = []
        crash: list[BaseException] = []

        async with open_nursery() as nursery:
            scope = nursery.cancel_scope

            def pull() -> tuple[int, Any] | None:
                """The next element and its index, a place kept for it in ``out``; None when none may start."""
                # The input is pulled lazily, one element per free slot; a
                # plain iterator is safe to share between tasks because
                # next() never yields to trio.
                if failure or crash:  # the scope is cancelled: start nothing more
                    return None
                try:
                    got = next(numbered, None)
                except Exception as exc:
                    note_node(exc, path)
                    keep_first_crash(crash, scope, exc)
                    return None
                if got is None:
                    return None
                if at_most is not None and got[0] >= at_most:
                    msg = f"each() at {path!r} was declared at_most={at_most} but its input has more elements"
                    keep_first_crash(crash, scope, ValueError(msg))
                    return None
                out.append(None)
                return got

            def settle(i: int, result: Result[Any, Any]) -> bool:
                """Keep element ``i``'s outcome; False once the run stops (fail-fast)."""
                if keep_going:
                    out[i] = result
                elif isinstance(result, Success):
                    out[i] = result._inner_value
                else:
                    if not failure:
                        failure.append(result)
                        scope.cancel()
                    return False
                return True

            async def one(i: int, item: Any) -> None:
                # A task per element is spawned before any runs: one whose
                # scope was cancelled meanwhile (a sibling failed) starts nothing.
                await trio.lowlevel.checkpoint_if_cancelled()
                try:
                    result = await inner(item, f"{prefix}{i}]")
                except Exception as exc:
                    keep_first_crash(crash, scope, exc)
                    return
                settle(i, result)

            async def bare_worker() -> None:
                # The leaf call of _run's limited agent leaf, inlined into the
                # worker loop (bare_leaf chose it): no coroutine and no path
                # string per element unless one is needed.  A worker keeps
                # its slot for its next element while nobody waits for one
                # (the pull in between never yields).  What this buys is the
                # do-nothing rows of benchmarks/each.py (about 2.4x -> 1.8x).
                assert limiter is not None  # workers exist only under a limit
                cancelled_here = trio.lowlevel.checkpoint_if_cancelled
                held = False
                try:
                    while (got := pull()) is not None:
                        i, item = got
                        # No leaf starts in a cancelled scope, held slot or not.
                        await cancelled_here()
                        if not held:
                            if own is None or not own.try_acquire():
                                await limiter.acquire(priority)
                            held = True
                        try:
                            result = await fn(item)
                        except Exception as exc:
                            note_node(exc, f"{prefix}{i}]")
                            keep_first_crash(crash, scope, exc)
                            return
                        if own is None or own.waiting:
                            held = False
                            limiter.release()
                        if type(result) is fast_success:
                            # The common case without the ABC checks of isinstance.
                            out[i] = result._inner_value
                            continue
                        if not isinstance(result, Result):
                            keep_first_crash(crash, scope, not_a_result(leaf_name, f"{prefix}{i}]", result))
                            return
                        if not settle(i, result):
                            return
                finally:
                    if held:
                        limiter.release()

            workers = width if width is None or not isinstance(x, Sized) else min(width, len(x))
            if bare is not None and workers is not None:
                for _ in range(workers):
                    nursery.start_soon(bare_worker)
            else:
                _start_pulling(nursery, workers, pull, one)
        if crash:
            raise crash[0]
        if failure:
            return failure[0]
        return Success(out)

    return run_each


@compiles(Each)
def _compile_each(c: Compiler, node: Each[Any, Any, Any], env: Env) -> Runner:
    return _each_runner(c, node, env, keep_going=False)


@compiles(Collect)
def _compile_collect(c: Compiler, node: Collect[Any, Any, Any], env: Env) -> Runner:
    inner = node.inner
    seg = segments((inner,))[0]
    spread: Runner | None = None
    if isinstance(inner, Parallel) and inner.label is None:
        outcomes = _outcomes(c, inner.operands, env)

        async def run_group(x: Any, path: str) -> Result[Any, Any]:
            return Success(tuple(await outcomes(x, path)))

        spread = run_group
    elif isinstance(inner, Each) and inner.label is None:
        spread = _each_runner(c, inner, env, keep_going=True)
    if spread is not None:
        # The group node is not compiled on its own here, so it reports to
        # the observer from this wrapper.
        if c.observed:
            spread = observed(inner, spread)
        runner = spread

        async def run_collect(x: Any, path: str) -> Result[Any, Any]:
            return await runner(x, path + seg)

        return run_collect

    plain = c.compile(inner, env)

    async def run_collect_one(x: Any, path: str) -> Result[Any, Any]:
        return Success(await plain(x, path + seg))

    return run_collect_one


@compiles(FirstSuccess)
def _compile_first_success(c: Compiler, node: FirstSuccess[Any, Any, Any], env: Env) -> Runner:
    operands = node.operands
    runners_: list[Runner] = []
    for op in operands:  # a loop: no frame of its own per level (MAX_DEPTH)
        runners_.append(c.compile(op, env))
    runners = tuple(runners_)
    segs = segments(operands)
    n = len(runners)
    hedge = node.hedge

    async def run_first_success(x: Any, path: str) -> Result[Any, Any]:
        errors: list[Any] = [None] * n
        wins: list[tuple[int, Result[Any, Any]]] = []
        crash: list[BaseException] = []
        started = 0
        failed = 0
        all_failed = trio.Event()

        async with open_nursery() as nursery:
            scope = nursery.cancel_scope

            async def one(i: int) -> None:
                nonlocal failed
                try:
                    result = await runners[i](x, path + segs[i])
                except Exception as exc:
                    keep_first_crash(crash, scope, exc)
                    return
                if isinstance(result, Success):
                    wins.append((i, result))
                    scope.cancel()
                    return
                errors[i] = result._inner_value
                failed += 1
                if failed == started:
                    all_failed.set()

            if hedge is None:
                started = n
                for i in range(n):
                    nursery.start_soon(one, i)
            else:
                # The nursery body is the launcher: it waits `hedge` seconds
                # after each start, or less when every started operand has
                # already failed; a success cancels it with the rest.
                for i in range(n):
                    all_failed = trio.Event()
                    started = i + 1
                    nursery.start_soon(one, i)
                    if started < n:
                        with trio.move_on_after(hedge):
                            await all_failed.wait()
        if crash:
            raise crash[0]
        if wins:
            return min(wins, key=lambda w: w[0])[1]
        return Failure(AllFailed(tuple(errors)))

    return run_first_success


@compiles(Vote)
def _compile_vote(c: Compiler, node: Vote[Any, Any, Any], env: Env) -> Runner:
    operands = node.operands
    runners_: list[Runner] = []
    for op in operands:  # a loop: no frame of its own per level (MAX_DEPTH)
        runners_.append(c.compile(op, env))
    runners = tuple(runners_)
    segs = segments(operands)
    n = len(runners)
    key = node.key

    async def run_vote(x: Any, path: str) -> Result[Any, Any]:
        counts: dict[Hashable, int] = {}
        # For each key: the lowest operand index that voted for it, and its value.
        first_of: dict[Hashable, tuple[int, Any]] = {}
        crash: list[BaseException] = []
        done = 0
        failed = 0
        decided = False

        async with open_nursery() as nursery:
            scope = nursery.cancel_scope

            async def one(i: int) -> None:
                nonlocal done, failed, decided
                try:
                    result = await runners[i](x, path + segs[i])
                    if decided:
                        return  # finished in the same instant the vote was settled
                    done += 1
                    if isinstance(result, Success):
                        value = result._inner_value
                        if key is None:
                            k = value
                        else:
                            try:
                                k = key(value)
                            except Exception as exc:
                                note_function(exc, "key", key, path)
                                raise
                        try:
                            counts[k] = counts.get(k, 0) + 1
                        except TypeError as exc:
                            exc.add_note(
                                f"combinators: vote() at {path!r} counts values in a dict; "
                                f"pass key= to map {type(k).__name__} values to something hashable"
                            )
                            raise
                        if k not in first_of or i < first_of[k][0]:
                            first_of[k] = (i, value)
                    else:
                        failed += 1
                except Exception as exc:
                    note_node(exc, path + segs[i])
                    keep_first_crash(crash, scope, exc)
                    return
                top = max(counts.values(), default=0)
                if 2 * top > n or 2 * (top + n - done) <= n:
                    decided = True
                    scope.cancel()

            for i in range(n):
                nursery.start_soon(one, i)
        if crash:
            raise crash[0]
        # Most votes first; ties in operand order (of each candidate's first voter).
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], first_of[kv[0]][0]))
        if ranked and 2 * ranked[0][1] > n:
            return Success(first_of[ranked[0][0]][1])
        return Failure(NoMajority(tuple(ranked), failed))

    return run_vote


@compiles(AverageConfidence)
def _compile_average_confidence(c: Compiler, node: AverageConfidence[Any, Any, Any], env: Env) -> Runner:
    outcomes = _outcomes(c, node.operands, env)

    async def run_average(x: Any, path: str) -> Result[Any, Any]:
        results: list[Result[Any, Any]] = await outcomes(x, path)
        outputs = tuple(r._inner_value for r in results if isinstance(r, Success))
        if not outputs:
            return Failure(AllFailed(tuple(r._inner_value for r in results)))
        total = 0.0
        for out in outputs:
            conf = getattr(out, "confidence", None)
            if isinstance(conf, bool) or not isinstance(conf, int | float):
                msg = (
                    f"average_confidence() at {path!r}: output {_short(out)} has no float "
                    f"`confidence` (got {conf!r})"
                )
                raise TypeError(msg)
            total += conf
        return Success(Confident(total / len(outputs), outputs, len(results) - len(outputs)))

    return run_average


@compiles(Aggregate)
def _compile_aggregate(c: Compiler, node: Aggregate[Any, Any, Any], env: Env) -> Runner:
    outcomes = _outcomes(c, node.operands, env)
    f = node.f

    async def run_aggregate(x: Any, path: str) -> Result[Any, Any]:
        results = tuple(await outcomes(x, path))
        try:
            out = f(results)
        except Exception as exc:
            note_function(exc, "aggregate", f, path)
            raise
        if not isinstance(out, Result):
            msg = (
                f"aggregate() at {path!r}: the function {_fn_name(f)!r} returned "
                f"{type(out).__name__} {_short(out)}; it must return Success(...) or Failure(...)"
            )
            raise TypeError(msg)
        return out

    return run_aggregate
