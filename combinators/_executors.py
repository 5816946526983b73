"""Where a leaf's function runs: in the trio task, in worker processes, elsewhere.

An :class:`Executor` runs one plain (sync) function on one input somewhere
and gives back its value or raises its exception.  ``agent.on(executor)``
wraps a subtree in an :class:`OnExecutor` node; its compile rule sets
``Env.executor`` for everything below, and the leaf rule in ``_run`` hands
every *sync* leaf function of the subtree (``pure`` and sync ``lift``) to
:func:`executor_leaf_runner`.  Async leaves stay in the trio task: they
already yield while they wait, and a worker process has no trio run to
await them in.

Limits, priorities and rates still wrap the leaf on the trio side, so a
leaf holds its slot while its function runs remotely.  Cancellation (a
timeout, a fail-fast sibling, the caller's scope) reaches the executor's
``call``: :func:`processes` kills the worker, ``ray_cluster`` cancels the
task with ``force=True``.

Exceptions raised by the function in a worker come back as themselves (the
same class and arguments), with the worker-side traceback kept as text: in a
note on the exception and through :func:`remote_traceback`.  ``lift`` turns
them into ``Crashed`` exactly as in-process; ``pure`` lets them propagate.
"""

from __future__ import annotations

import importlib
import pickle
import traceback
from collections.abc import Callable
from typing import Any, ClassVar, Final, Protocol, TypeVar, final, runtime_checkable

import attrs
import trio
from returns.result import Failure, Result, Success

from ._exceptions import AgentTypeError, BuildError, Crashed
from ._expr import Agent, Leaf, LeafMode, _fn_name
from ._notes import note_node
from ._plan import Compiler, Env, compiles, segments
from ._types import _E, _I, _O, Runner, _Err_co, _In_contra, _Out_co

_T = TypeVar("_T")
_R = TypeVar("_R")

_TB_ATTR: Final = "__combinators_remote_traceback__"
_TB_NOTE: Final = "combinators: remote traceback ({where}):\n{text}"


@runtime_checkable
class Executor(Protocol):
    """Where the sync leaf functions of a subtree run (``agent.on(executor)``).

    ``check`` is called for every sync leaf function when ``.on()`` builds
    the node, and raises :class:`AgentTypeError` for a function this executor
    cannot run (one that does not pickle, for a process pool).  ``call``
    runs ``fn(x)`` and gives its value, raising what ``fn`` raised; trio
    cancellation of ``call`` must stop the remote work or wait for it.
    :func:`in_task`, :func:`processes` and ``ray_cluster`` are the three
    the library brings.

    >>> import trio
    >>> from combinators import in_task, processes, pure, run_sync
    >>> class Logged:
    ...     name = "logged"
    ...     def check(self, fn, where): pass
    ...     async def call(self, fn, x):
    ...         await trio.lowlevel.checkpoint()
    ...         return fn(x)
    >>> isinstance(Logged(), Executor), isinstance(processes(), Executor)
    (True, True)
    >>> run_sync(pure(abs).on(Logged()), -4)
    <Success: 4>
    """

    @property
    def name(self) -> str:
        """A short name for messages (``"processes"``)."""
        ...

    def check(self, fn: Callable[[Any], Any], where: str) -> None:
        """Refuse (``AgentTypeError``) a function this executor cannot run."""
        ...

    async def call(self, fn: Callable[[_T], _R], x: _T) -> _R:
        """Run ``fn(x)`` on this executor and give its value."""
        ...


# --------------------------------------------------------------------------
# The worker side: shared by processes and Ray


class RemoteError(Exception):
    """Stands in for an exception raised in a worker that could not be pickled back.

    ``type_name`` is the qualified name of the original class; the message is
    its ``str``; the remote traceback is kept as for any remote exception.

    >>> err = RemoteError("shop.Unpicklable", "lock held")
    >>> str(err), isinstance(err, Exception)
    ('shop.Unpicklable: lock held', True)
    """

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(type_name, message)
        self.type_name = type_name
        self.message = message

    def __str__(self) -> str:
        return f"{self.type_name}: {self.message}"


def call_in_worker(fn: Callable[[_T], _R], x: _T) -> tuple[bool, Any, str]:
    """Run ``fn(x)`` in a worker: ``(True, value, "")`` or ``(False, exc, traceback)``.

    Module-level so that it pickles by reference.  The exception travels as
    a value (not raised) so its traceback text survives the trip whatever
    the transport does with tracebacks.
    """
    try:
        return (True, fn(x), "")
    except Exception as exc:
        # Drop this wrapper's own frame: the traceback starts in ``fn``.
        tb = exc.__traceback__
        text = "".join(traceback.format_exception(type(exc), exc, tb.tb_next if tb else None))
        try:
            pickle.loads(pickle.dumps(exc))
        except Exception:
            exc = RemoteError(f"{type(exc).__module__}.{type(exc).__qualname__}", str(exc))
        return (False, exc, text)


def unwrap_outcome(outcome: tuple[bool, Any, str], where: str) -> Any:
    """The value of a :func:`call_in_worker` outcome, or raise its exception."""
    ok, payload, text = outcome
    if ok:
        return payload
    exc: Exception = payload
    setattr(exc, _TB_ATTR, text)
    exc.add_note(_TB_NOTE.format(where=where, text=text.rstrip()))
    raise exc


def remote_traceback(exc: BaseException) -> str | None:
    """The traceback text of an exception raised in a worker, else ``None``.

    For a ``lift`` leaf on an executor, look at ``crashed.exception``:

    >>> remote_traceback(ValueError("raised here")) is None
    True
    """
    text = getattr(exc, _TB_ATTR, None)
    return text if isinstance(text, str) else None


def require_picklable(fn: Callable[..., Any], where: str, dumps: Callable[[Any], bytes], how: str) -> None:
    """Raise ``AgentTypeError`` naming ``where`` if ``dumps(fn)`` fails."""
    try:
        dumps(fn)
    except Exception as exc:
        msg = (
            f"{where}: the function {_fn_name(fn)!r} cannot be sent to a worker "
            f"({how} failed: {type(exc).__name__}: {exc}); define it at module "
            f"level and close over nothing that cannot be pickled"
        )
        raise AgentTypeError(msg) from exc


# --------------------------------------------------------------------------
# Executors


@final
@attrs.frozen(eq=False)
class InTask:
    """Run leaf functions in the trio task itself: the default.

    Useful to bring one leaf back inside a subtree moved elsewhere:
    ``(parse >> score.on(in_task())).on(processes())``.
    """

    @property
    def name(self) -> str:
        """A short name for messages."""
        return "in_task"

    def check(self, fn: Callable[[Any], Any], where: str) -> None:
        """Every function runs in the task."""

    async def call(self, fn: Callable[[_T], _R], x: _T) -> _R:
        """``fn(x)``, then a checkpoint."""
        value = fn(x)
        await trio.lowlevel.checkpoint()
        return value


def in_task() -> InTask:
    """The executor that runs leaf functions in the trio task (the default).

    >>> from combinators import pure, run_sync
    >>> run_sync(pure(len).on(in_task()), "four")
    <Success: 4>
    """
    return InTask()


def _process_dumps() -> Callable[[Any], bytes]:
    # trio-parallel sends with cloudpickle when it is installed, else pickle;
    # refuse exactly what it cannot send.
    try:
        cloudpickle = importlib.import_module("cloudpickle")
    except ImportError:
        return pickle.dumps
    dumps: Callable[[Any], bytes] = cloudpickle.dumps
    return dumps


_LIMITERS: trio.lowlevel.RunVar[dict[ProcessPool, trio.CapacityLimiter]] = trio.lowlevel.RunVar(
    "combinators_process_limiters"
)


@final
@attrs.frozen(eq=False)
class ProcessPool:
    """Worker processes from trio-parallel; build with :func:`processes`.

    Compared by identity: each ``processes()`` call is its own pool of
    slots (``max_workers``), shared by every ``.on()`` that uses it.

    >>> pool = processes(4)
    >>> pool == processes(4), pool.name, pool.kill_on_cancel
    (False, 'processes', True)
    """

    max_workers: int | None
    kill_on_cancel: bool
    @property
    def name(self) -> str:
        """A short name for messages."""
        return "processes"

    def check(self, fn: Callable[[Any], Any], where: str) -> None:
        """Refuse a function that cannot be pickled to a worker process."""
        require_picklable(fn, where, _process_dumps(), "pickling")

    def _limiter(self) -> trio.CapacityLimiter:
        import trio_parallel

        if self.max_workers is None:
            limiter: trio.CapacityLimiter = trio_parallel.current_default_worker_limiter()
            return limiter
        try:
            table = _LIMITERS.get()
        except LookupError:
            table = {}
            _LIMITERS.set(table)
        found = table.get(self)
        if found is None:
            found = table[self] = trio.CapacityLimiter(self.max_workers)
        return found

    async def call(self, fn: Callable[[_T], _R], x: _T) -> _R:
        """Run ``fn(x)`` in a worker process; a cancel kills the worker."""
        import trio_parallel

        outcome = await trio_parallel.run_sync(
            call_in_worker,
            fn,
            x,
            kill_on_cancel=self.kill_on_cancel,
            limiter=self._limiter(),
        )
        if not self.kill_on_cancel:
            # The worker was shielded and finished; if we were cancelled
            # meanwhile, the value arrives too late to be the result.
            await trio.lowlevel.checkpoint_if_cancelled()
        value: _R = unwrap_outcome(outcome, "worker process")
        return value


def processes(max_workers: int | None = None, *, kill_on_cancel: bool = True) -> ProcessPool:
    """Run leaf functions in worker processes (trio-parallel).

    ``max_workers`` bounds how many run at once (default: trio-parallel's
    limit, the number of CPUs).  Only sync functions that pickle can move:
    a lambda or local function is refused when ``.on()`` is called.
    With ``kill_on_cancel`` (the default) a cancelled leaf's worker is
    killed at once; without it, cancellation waits for the function to end.

    >>> pool = processes(2)
    >>> pool.max_workers
    2
    """
    if max_workers is not None and (isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1):
        msg = f"processes(): max_workers must be an int >= 1 or None, got {max_workers!r}"
        raise BuildError(msg)
    return ProcessPool(max_workers, bool(kill_on_cancel))


# --------------------------------------------------------------------------
# The node


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


@compiles(OnExecutor)
def _compile_on(c: Compiler, node: OnExecutor[Any, Any, Any], env: Env) -> Runner:
    inner_env = attrs.evolve(env, executor=node.executor)
    inner = c.compile(node.inner, inner_env)
    seg = segments((node.inner,))[0]

    async def run_on(x: Any, path: str) -> Result[Any, Any]:
        return await inner(x, path + seg)

    return run_on


def executor_leaf_runner(executor: Executor, leaf: Leaf[Any, Any, Any], base: Runner) -> Runner:
    """The runner of ``leaf`` with its function on ``executor`` (``base`` if it stays)."""
    if leaf.is_async or isinstance(executor, InTask):
        return base
    fn = leaf.fn
    call = executor.call
    if leaf.mode is LeafMode.LIFT:

        async def run_lift_on(x: Any, path: str) -> Result[Any, Any]:
            try:
                value = await call(fn, x)
            except Exception as exc:
                return Failure(Crashed(exc, path))
            return Success(value)

        return run_lift_on

    async def run_pure_on(x: Any, path: str) -> Result[Any, Any]:
        try:
            value = await call(fn, x)
        except Exception as exc:
            note_node(exc, path)
            raise
        return Success(value)

    return run_pure_on
