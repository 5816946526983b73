"""What an executor is (``agent.on(executor)``), and what every backend shares.

An :class:`Executor` runs one plain (sync) function on one input somewhere
and gives back its value or raises its exception.  This is the interface:
the tree (``Agent.on``) and the interpreter (``_executors``) use it, and
the backends implement it — :class:`InTask` here (the default),
``processes()`` in ``_processes``, ``ray_cluster()`` in ``_ray``.  The
worker-side helpers below are what the remote backends share: a function's
outcome travels back as a value with the worker's traceback as text.
"""

from __future__ import annotations

import pickle
import traceback
from collections.abc import Callable
from typing import Any, Final, Protocol, TypeVar, final, runtime_checkable

import attrs
import trio

from ._check import _fn_name
from ._exceptions import AgentTypeError, RemoteError


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
