"""The interpreter: ``run``/``run_sync`` and the rules for the core node kinds.

This is the only place that runs trees.  Each concurrency node maps onto a
trio nursery and its cancel scope:

* ``a | b`` opens one nursery; the first failure (in trio time) cancels the
  nursery's scope, so siblings stop at their next checkpoint.
* ``.timeout(s)`` is a ``trio.move_on_after(s)`` scope around the subtree.

Sequences (``>>``, ``transform``, ``map_error``, ``recover``, ``fallback``
along a left spine) are flattened into one list of steps walked by a loop,
so a chain of 100,000 steps uses neither Python recursion nor a task per
step.  Only ``Exception`` is ever caught for conversion (``lift``);
``trio.Cancelled`` and every other ``BaseException`` pass through.
"""

from __future__ import annotations

import functools
import random
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar

import attrs
import trio
from returns.result import Failure, Result, Success

from ._cancel import keep_first_crash, open_nursery
from ._exceptions import BuildError, Crashed, TimedOut
from ._expr import (
    Agent,
    Budgeted,
    Const,
    Leaf,
    LeafMode,
    Limit,
    Parallel,
    Prioritized,
    Rate,
    Retry,
    Timeout,
    node_cache,
)
from ._check import _fn_name, _show
from . import _chain as _chain  # registers the sequence rules
from . import _executors as _executors  # registers the .on() rule
from ._aio_leaf import is_host_call, needs_host
from ._limits import Admission, PriorityLimiter, SharedLimiter, SharedWindow, StartWindow, as_weight
from ._notes import not_a_result, note_function, note_node
from ._observe import (
    ATTEMPT,
    CANCELLED,
    FAILED,
    SINK,
    STARTED,
    SUCCEEDED,
    Event,
    EventKind,
    Observer,
    emit,
    new_event,
    observed,
    observing,
    tell,
)
from ._plan import Compiler, Env, LeafLayer, Journal, bare_leaf, compiles, policy_layer, segments
from ._spend import Budget, SpendLimit, Usage
from ._types import Runner, _OB


_I = TypeVar("_I")
_O = TypeVar("_O")
_E = TypeVar("_E")


# --------------------------------------------------------------------------
# Public entry points


async def run(
    agent: Agent[_I, _O, _E],
    x: _I,
    *,
    max_concurrency: int | None = None,
    observer: Observer | None = None,
    journal: Journal | None = None,
    run_id: str | None = None,
    budget: SpendLimit[_OB] | None = None,
) -> Result[_O, _E | _OB]:
    """Run ``agent`` on ``x`` inside trio and give its ``Result``.

    No task outlives this call.  ``max_concurrency`` bounds how many leaves
    run at once in the whole run; ``observer`` receives every event.
    Exceptions raised by ``agent``/``pure`` functions propagate as
    themselves with the node path as a note.  With a ``journal`` (and a
    ``run_id`` to resume by) every leaf's success is recorded before it is
    used, and a run with the same id answers recorded leaves from the
    journal (docs/journal.md).  With a ``budget`` (a ``Usage`` for this run
    or a shared ``Budget``) every leaf call first reserves what it declared
    (``.costs``) and fails with ``OverBudget`` when that does not fit
    (docs/spend.md).

    >>> from combinators import pure
    >>> import trio
    >>> trio.run(run, pure(str.upper), "hi")
    <Success: HI>
    """
    if not trio.lowlevel.in_trio_task():
        raise RuntimeError(outside_trio_message("run()"))
    if journal is not None or run_id is not None:
        if journal is None:
            msg = f"run(): run_id={run_id!r} was given without a journal to record it in"
            raise TypeError(msg)
        return await _run_journaled(
            agent, x, journal, run_id, max_concurrency=max_concurrency, observer=observer, budget=budget
        )
    runner = compile_tree(agent, max_concurrency=max_concurrency, observer=observer, budget=budget)
    return await runner(x, agent.name)


async def _run_journaled(
    agent: Agent[Any, Any, Any],
    x: object,
    journal: object,
    run_id: str | None,
    *,
    max_concurrency: int | None,
    observer: Observer | None,
    budget: SpendLimit[Any] | None,
) -> Result[Any, Any]:
    """Run ``agent`` with the leaf layer ``journal`` opens for ``run_id`` (``run(journal=, run_id=)``)."""
    if not isinstance(journal, Journal):
        msg = f"run(): journal must be a Journal (Journal.sqlite(path), ...), got {journal!r}"
        raise TypeError(msg)
    if not isinstance(run_id, str) or not run_id:
        msg = f"run(): a journaled run needs a run_id (a non-empty string) to resume by, got {run_id!r}"
        raise BuildError(msg)
    single: BaseException
    try:
        async with journal._open_run(agent, run_id) as layer:
            runner = compile_tree(
                agent, max_concurrency=max_concurrency, observer=observer, budget=budget, leaf_layers=(layer,)
            )
            return await runner(x, agent.name)
    except BaseExceptionGroup as group:
        # The session's nursery (the journal's writer task) wraps what the
        # run raised; a bug in an agent must come out as itself (DESIGN §1).
        if len(group.exceptions) != 1:
            raise
        single = group.exceptions[0]
    raise single


def run_sync(
    agent: Agent[_I, _O, _E],
    x: _I,
    *,
    max_concurrency: int | None = None,
    observer: Observer | None = None,
    clock: trio.abc.Clock | None = None,
    journal: Journal | None = None,
    run_id: str | None = None,
    budget: SpendLimit[_OB] | None = None,
) -> Result[_O, _E | _OB]:
    """Start trio, run ``agent`` on ``x``, and give its ``Result``.

    For synchronous code (scripts, notebooks' plain cells); inside a trio
    run use ``await run(agent, x)``.  It blocks until the run ends.  Called
    from asyncio code on a loop that hosts ``aio.run``'s trio guest run (one
    trio run per thread), it runs in a thread of its own and still blocks
    the loop: there, prefer ``await aio.run(...)`` (docs/asyncio.md).

    >>> from combinators import pure
    >>> run_sync(pure(str.upper), "hi")
    <Success: HI>
    """
    if trio.lowlevel.in_trio_task():
        msg = (
            f"run_sync({agent.name if isinstance(agent, Agent) else 'agent'}, x) was called inside a trio run, "
            "and it starts a run of its own: use `await run(agent, x)` there"
        )
        raise RuntimeError(msg)
    go = functools.partial(
        run,
        agent,
        x,
        max_concurrency=max_concurrency,
        observer=observer,
        journal=journal,
        run_id=run_id,
        budget=budget,
    )
    if trio.lowlevel.in_trio_run() and not trio.lowlevel.in_trio_task():
        # A guest run lives on this thread (between its ticks): a second
        # trio run needs a thread of its own.
        outcome: list[Result[_O, _E | _OB]] = []
        failure: list[BaseException] = []

        def in_thread() -> None:
            try:
                outcome.append(trio.run(go, clock=clock))
            except BaseException as exc:  # handed to the caller's thread as is
                failure.append(exc)

        thread = threading.Thread(target=in_thread, name="combinators run_sync")
        thread.start()
        thread.join()
        if failure:
            raise failure[0]
        return outcome[0]
    return trio.run(go, clock=clock)


def outside_trio_message(what: str) -> str:
    """Why ``what`` (``run()``, ``stream()``) cannot go on here, and what to call instead (the error path only)."""
    import sniffio

    try:
        library: str | None = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        library = None
    where = f"was awaited from {library}" if library else "was called outside a trio run"
    return (
        f"combinators runs agents on trio, and {what} {where}: "
        "use `await combinators.aio.run(agent, x)` from asyncio, "
        "`run_sync(agent, x)` from synchronous code, or `await run(agent, x)` inside `trio.run`"
    )


def compile_tree(
    agent: Agent[Any, Any, Any],
    *,
    max_concurrency: int | None = None,
    observer: Observer | None = None,
    leaf_layers: tuple[LeafLayer, ...] = (),
    budget: SpendLimit[Any] | None = None,
) -> Runner:
    """The runner for one run of ``agent``.

    The plan is compiled once per tree and reused for every run that adds
    no state of its own (no ``max_concurrency``, no journal) when compiling
    it put none in either (no ``.limit(n)``, ``.rate(calls)`` or ``bind``
    inside): such limiters and rate windows belong to one run, while shared
    ones (``.limit(limiter)``) are the user's and keep the plan reusable.  An observer is given to the plan at its root, per run.
    """
    if not isinstance(agent, Agent):
        msg = f"run() expects an Agent, got {type(agent).__name__} {agent!r}"
        raise TypeError(msg)
    if max_concurrency is not None and (
        isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1
    ):
        msg = f"max_concurrency must be an int >= 1, got {max_concurrency!r}"
        raise ValueError(msg)
    budgets: tuple[Budget, ...] = ()
    if budget is not None:
        from ._spend import budget_of, check_budget

        if not isinstance(budget, Usage | Budget):
            msg = f"run(): budget must be a Usage or a Budget, got {type(budget).__name__} {budget!r}"
            raise TypeError(msg)
        check_budget(agent, budget.limit if isinstance(budget, Budget) else budget, "run(budget=...)")
        budgets = (budget_of(budget, "run"),)
    observed = observer is not None
    reusable = max_concurrency is None and not leaf_layers and not budgets
    slot = _PLAN_KEYS[observed]
    plan: Runner | None = node_cache(agent).get(slot) if reusable else None
    if plan is None:
        env = Env(limiters=(PriorityLimiter(max_concurrency),) if max_concurrency else (), budgets=budgets)
        compiler = Compiler(observed=observed, leaf_layers=leaf_layers)
        plan = compiler.compile(agent, env)
        if compiler.host_leaves:
            plan = needs_host(plan)
        if reusable and not compiler.per_run:
            node_cache(agent)[slot] = plan
    return plan if observer is None else observing(observer, plan)


#: Where a tree keeps its plans that hold no per-run state (on the tree
#: itself: ``node_cache``), unobserved and observed.
_PLAN_KEYS: Final = ("plan", "observed plan")


# --------------------------------------------------------------------------
# Leaves


def _base_leaf_runner(leaf: Leaf[Any, Any, Any]) -> Runner:
    fn = leaf.fn
    name = leaf.name
    if leaf.mode is LeafMode.RESULT:

        async def run_agent(x: Any, path: str) -> Result[Any, Any]:
            try:
                result = await fn(x)
            except Exception as exc:
                note_node(exc, path)
                raise
            if not isinstance(result, Result):
                raise not_a_result(name, path, result)
            return result

        return run_agent
    if leaf.mode is LeafMode.LIFT:
        is_async = leaf.is_async

        async def run_lift(x: Any, path: str) -> Result[Any, Any]:
            try:
                value = (await fn(x)) if is_async else fn(x)
            except Exception as exc:
                return Failure(Crashed(exc, path))
            if not is_async:
                await trio.lowlevel.checkpoint()
            return Success(value)

        return run_lift

    async def run_pure(x: Any, path: str) -> Result[Any, Any]:
        try:
            value = fn(x)
        except Exception as exc:
            note_node(exc, path)
            raise
        return Success(value)

    return run_pure


@compiles(Leaf)
def _compile_leaf(c: Compiler, leaf: Leaf[Any, Any, Any], env: Env) -> Runner:
    for limiter in env.limiters:
        limiter.note(env.priority)
    if is_host_call(leaf.fn):
        c.host_leaves = True
    if (
        c.observed
        and leaf.mode is LeafMode.RESULT
        and env.executor is None
        and not c.leaf_layers
        and not env.windows
        and len(env.limiters) <= 1
        and not _spends(leaf, env)
    ):
        return _observed_agent_leaf(leaf, env)
    if leaf.mode is LeafMode.RESULT and len(env.limiters) == 1 and bare_leaf(c, leaf, env) is not None:
        return _limited_agent_leaf(leaf, env.limiters[0], env.priority)
    if (
        env.budgets
        and not c.observed
        and leaf.mode is LeafMode.RESULT
        and len(env.limiters) <= 1
        and env.executor is None
        and not c.leaf_layers
        and not env.windows
        and leaf.cached is None
        and not any(b.remote for b in env.budgets)
    ):
        from ._spend import budgeted_agent_leaf

        return budgeted_agent_leaf(leaf, env)
    runner = _base_leaf_runner(leaf)
    if env.executor is not None:
        from ._executors import executor_leaf_runner

        runner = executor_leaf_runner(env.executor, leaf, runner)
    if env.budgets or (c.observed and leaf.spend is not None):
        # Inside the events: a refused leaf starts and fails with OverBudget,
        # and its ``charged`` event comes before its terminal one.
        from ._spend import metered_leaf

        runner = metered_leaf(c, leaf, env, runner)
    if c.observed:
        # Inside admission: a leaf starts when it has its slots and rate
        # tokens, so its events time its own run, not its wait.
        runner = observed(leaf, runner)
    if env.limiters:
        runner = _limited(runner, env.limiters, env.priority)
    if env.windows:
        runner = _rated(runner, env.windows)
    if leaf.cached is not None:
        # Outside admission and budgets: a hit takes no slot and reserves nothing.
        runner = policy_layer(leaf.cached)(c, leaf, env, runner)
    # Layers (the journal) go outside admission: a leaf replayed from the
    # journal takes no limiter slot and no rate token (and reports itself).
    for layer in c.leaf_layers:
        runner = layer(c, leaf, env, runner)
    if c.observed:
        runner._observed = True  # type: ignore[attr-defined]  # events are inside
    return runner


def _spends(leaf: Leaf[Any, Any, Any], env: Env) -> bool:
    """Does this leaf need the general path for spend (budgets, costs, cache)?"""
    return bool(env.budgets) or leaf.spend is not None or leaf.cached is not None


def _limited_agent_leaf(leaf: Leaf[Any, Any, Any], limiter: Admission, priority: Any) -> Runner:
    """An ``agent`` leaf under one limiter, in one coroutine: the fan-out hot path."""
    fn = leaf.fn
    name = leaf.name

    async def run_limited_agent(x: Any, path: str) -> Result[Any, Any]:
        await limiter.acquire(priority)
        try:
            result = await fn(x)
        except Exception as exc:
            note_node(exc, path)
            raise
        finally:
            limiter.release()
        if not isinstance(result, Result):
            raise not_a_result(name, path, result)
        return result

    return run_limited_agent


def _observed_agent_leaf(leaf: Leaf[Any, Any, Any], env: Env) -> Runner:
    """An observed ``agent`` leaf in one coroutine (slot, events, call, check).

    The general path wraps the call, the events and the limiter in three
    coroutines; fusing them is what keeps an attached observer cheap on the
    common leaf.  As there, ``started`` comes once the leaf has its slot.
    """
    fn = leaf.fn
    name = leaf.name
    kind = leaf.kind
    limiter = env.limiters[0] if env.limiters else None
    priority = env.priority

    async def run_observed_agent(x: Any, path: str) -> Result[Any, Any]:
        observer, now = SINK.get()
        attempt = ATTEMPT.get()
        if limiter is not None:
            await limiter.acquire(priority)
        try:
            observer(new_event(Event, (STARTED, path, now(), kind, attempt, None, None)))
        except BaseException as exc:
            # The observer's bug (``tell``, inlined): the leaf never started.
            if limiter is not None:
                limiter.release()
            if isinstance(exc, Exception):
                note_function(exc, "observer", observer, path)
            raise
        try:
            result = await fn(x)
        except Exception as exc:
            note_node(exc, path)
            tell(observer, new_event(Event, (FAILED, path, now(), kind, attempt, exc, None)))
            raise
        except BaseException:
            tell(observer, new_event(Event, (CANCELLED, path, now(), kind, attempt, None, None)))
            raise
        finally:
            if limiter is not None:
                limiter.release()
        if type(result) is Success:
            try:
                observer(new_event(Event, (SUCCEEDED, path, now(), kind, attempt, None, result._inner_value)))
            except Exception as exc:  # ``tell``, inlined (hot)
                note_function(exc, "observer", observer, path)
                raise
        elif isinstance(result, Failure):
            tell(observer, new_event(Event, (FAILED, path, now(), kind, attempt, result._inner_value, None)))
        else:
            bug = not_a_result(name, path, result)
            tell(observer, new_event(Event, (FAILED, path, now(), kind, attempt, bug, None)))
            raise bug
        return result  # type: ignore[no-any-return]

    run_observed_agent._observed = True  # type: ignore[attr-defined]
    return run_observed_agent


def _limited(runner: Runner, limiters: tuple[Admission, ...], priority: Any) -> Runner:
    if len(limiters) == 1:
        (limiter,) = limiters

        async def run_limited_one(x: Any, path: str) -> Result[Any, Any]:
            await limiter.acquire(priority)
            try:
                return await runner(x, path)
            finally:
                limiter.release()

        return run_limited_one

    async def run_limited(x: Any, path: str) -> Result[Any, Any]:
        taken: list[Admission] = []
        try:
            # Outer limiters first: a fixed order along tree paths, so two
            # leaves never wait on each other's slots in a cycle.
            for limiter in limiters:
                await limiter.acquire(priority)
                taken.append(limiter)
            return await runner(x, path)
        finally:
            for limiter in reversed(taken):
                limiter.release()

    return run_limited


def _rated(
    runner: Runner, windows: tuple[tuple[StartWindow | SharedWindow, Callable[[Any], float] | None], ...]
) -> Runner:
    async def run_rated(x: Any, path: str) -> Result[Any, Any]:
        for window, weigh in windows:
            await window.take(1.0 if weigh is None else _weight_of(window, weigh, x, path))
        return await runner(x, path)

    return run_rated


def _weight_of(window: StartWindow | SharedWindow, weigh: Callable[[Any], float], x: Any, path: str) -> float:
    """``weigh(x)``, checked before it reaches the window (which it would corrupt)."""
    try:
        value = weigh(x)
    except Exception as exc:
        note_function(exc, "weight", weigh, path)
        raise
    weight = as_weight(value)
    if weight is None:
        msg = (
            f"the weight function {_fn_name(weigh)!r} of rate node {window.name!r} gave {_show(value)} "
            f"for the leaf at {path!r}; a weight must be a finite number >= 0 (not a bool)"
        )
        raise ValueError(msg)
    return weight


@compiles(Const)
def _compile_const(c: Compiler, node: Const[Any, Any, Any], env: Env) -> Runner:
    outcome: Result[Any, Any] = Success(node.value) if node.ok else Failure(node.value)

    async def run_const(x: Any, path: str) -> Result[Any, Any]:
        await trio.lowlevel.checkpoint()
        return outcome

    return run_const


# --------------------------------------------------------------------------
# Parallel


@compiles(Parallel)
def _compile_parallel(c: Compiler, node: Parallel[Any, Any, Any, Any], env: Env) -> Runner:
    operands = node.operands
    compiled: list[Runner] = []
    for op in operands:  # a loop, not a generator: one frame less per level (MAX_DEPTH)
        compiled.append(c.compile(op, env))
    return parallel_runner(tuple(compiled), segments(operands))


def parallel_runner(runners: tuple[Runner, ...], segs: tuple[str, ...]) -> Runner:
    """Run ``runners`` on one input in one nursery, fail-fast, tuple of outputs.

    The first failure cancels the nursery's scope (the siblings stop at their
    next checkpoint) and is the result.  An unexpected exception cancels the
    siblings too and is re-raised as itself, not inside an ExceptionGroup.
    """
    n = len(runners)

    async def run_parallel(x: Any, path: str) -> Result[Any, Any]:
        values: list[Any] = [None] * n
        first_failure: list[Result[Any, Any]] = []
        crash: list[BaseException] = []

        async with open_nursery() as nursery:
            scope = nursery.cancel_scope

            async def one(i: int) -> None:
                try:
                    result = await runners[i](x, path + segs[i])
                except Exception as exc:
                    keep_first_crash(crash, scope, exc)
                    return
                if isinstance(result, Success):
                    values[i] = result._inner_value
                elif not first_failure:
                    first_failure.append(result)
                    scope.cancel()

            for i in range(n):
                nursery.start_soon(one, i)
        if crash:
            raise crash[0]
        if first_failure:
            return first_failure[0]
        return Success(tuple(values))

    return run_parallel


# --------------------------------------------------------------------------
# Time and resources


@compiles(Timeout)
def _compile_timeout(c: Compiler, node: Timeout[Any, Any, Any], env: Env) -> Runner:
    inner = c.compile(node.inner, env)
    seg = segments((node.inner,))[0]
    seconds = node.seconds

    async def run_timeout(x: Any, path: str) -> Result[Any, Any]:
        with trio.move_on_after(seconds):
            return await inner(x, path + seg)
        return Failure(TimedOut(path, seconds))

    return run_timeout


@compiles(Retry)
def _compile_retry(c: Compiler, node: Retry[Any, Any, Any], env: Env) -> Runner:
    from ._retry import hinted_delay

    inner = c.compile(node.inner, env)
    seg = segments((node.inner,))[0]
    times, backoff, when, deadline = node.times, node.backoff, node.when, node.deadline
    # Unseeded jitter may share one source; a seeded one is made per run of
    # the node, from its path (see Backoff), the first time it is needed.
    shared = backoff.rng() if backoff.seed is None else None
    observed = c.observed

    async def run_retry(x: Any, path: str) -> Result[Any, Any]:
        start = trio.current_time()
        attempt = 1
        rng: random.Random | None = None
        while True:
            if not observed:
                result = await inner(x, path + seg)
            else:
                # Events below this node carry the attempt they belong to.
                token = ATTEMPT.set(attempt)
                try:
                    result = await inner(x, path + seg)
                finally:
                    ATTEMPT.reset(token)
            if isinstance(result, Success) or attempt > times:
                return result
            error = result._inner_value
            if when is not None:
                try:
                    wanted = when(error)
                except Exception as exc:
                    note_function(exc, "when", when, path)
                    raise
                if not wanted:
                    return result
            if rng is None:
                rng = shared if shared is not None else backoff.rng(path)
            delay = max(backoff.delay(attempt, rng), hinted_delay(error))
            if deadline is not None and trio.current_time() + delay - start >= deadline:
                return result
            await trio.sleep(delay)
            attempt += 1
            # After the wait, so each ``retried`` event is an attempt that
            # really starts (a cancel during the wait emits none).
            if observed:
                emit(EventKind.RETRIED, path, node="retry", attempt=attempt, error=error)

    return run_retry


@compiles(Limit)
def _compile_limit(c: Compiler, node: Limit[Any, Any, Any], env: Env) -> Runner:
    limiter: Admission
    if node.shared is not None:
        # The user's limiter, shared by every run: not state of this run,
        # so the plan stays reusable.
        limiter = SharedLimiter(node.shared)
    else:
        limiter = PriorityLimiter(node.n)
        c.per_run = True  # the limiter is this run's
    inner_env = attrs.evolve(env, limiters=env.limiters + (limiter,))
    return _child_under(c, node.inner, inner_env)


@compiles(Budgeted)
def _compile_budget(c: Compiler, node: Budgeted[Any, Any, Any], env: Env) -> Runner:
    from ._spend import Budget, budget_of

    if not isinstance(node.limit, Budget):
        c.per_run = True  # a budget made from a Usage is this run's
    inner_env = attrs.evolve(env, budgets=env.budgets + (budget_of(node.limit, node.name),))
    return _child_under(c, node.inner, inner_env)


@compiles(Prioritized)
def _compile_priority(c: Compiler, node: Prioritized[Any, Any, Any], env: Env) -> Runner:
    inner_env = attrs.evolve(env, priority=node.value)
    return _child_under(c, node.inner, inner_env)


@compiles(Rate)
def _compile_rate(c: Compiler, node: Rate[Any, Any, Any], env: Env) -> Runner:
    window: StartWindow | SharedWindow
    if node.shared is not None:
        window = SharedWindow(node.shared)
    else:
        window = StartWindow(node.calls, node.per, name=node.name)
        c.per_run = True  # the window is this run's
    inner_env = attrs.evolve(env, windows=env.windows + ((window, node.weight),))
    return _child_under(c, node.inner, inner_env)


def _child_under(c: Compiler, child: Agent[Any, Any, Any], env: Env) -> Runner:
    """A wrapper that only changes compile-time context: its one child under ``env``, one path level down."""
    inner = c.compile(child, env)
    seg = segments((child,))[0]

    async def run_wrapped(x: Any, path: str) -> Result[Any, Any]:
        return await inner(x, path + seg)

    return run_wrapped
