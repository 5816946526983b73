"""Events a run emits, and the observer protocol that receives them.

Every compiled node reports ``started`` and exactly one terminal event
(``succeeded``, ``failed``, ``timed_out`` or ``cancelled``) with its path and
trio time; retries add ``retried`` events between attempts.  With no
observer the interpreter compiles runners without any of this, so an
unobserved run pays nothing.
"""

from __future__ import annotations

import enum
from contextvars import ContextVar
from collections.abc import Callable, Sequence
from typing import Any, Final, NamedTuple, Protocol

import attrs
import trio
from returns.result import Failure, Result

from ._exceptions import TimedOut
from ._expr import Agent
from ._notes import note_function
from ._types import Runner


class EventKind(enum.Enum):
    """What happened to a node.

    >>> from combinators import Recorder, fail, run_sync
    >>> rec = Recorder()
    >>> _ = run_sync(fail("no").named("f"), None, observer=rec)
    >>> [e.kind for e in rec.events]
    [<EventKind.STARTED: 'started'>, <EventKind.FAILED: 'failed'>]
    """

    STARTED = "started"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    RETRIED = "retried"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    #: A leaf call's usage (``value`` is a ``Charge``), just before its terminal event.
    CHARGED = "charged"
    #: A leaf answered from its cache (``value`` is the answer), between its start and terminal events.
    CACHED = "cached"


# Module-level names for the hot paths: a global read is as cheap as a
# closure cell, and a compiled node then needs five fewer cells.
STARTED: Final = EventKind.STARTED
SUCCEEDED: Final = EventKind.SUCCEEDED
FAILED: Final = EventKind.FAILED
TIMED_OUT: Final = EventKind.TIMED_OUT
CANCELLED: Final = EventKind.CANCELLED

TERMINAL = frozenset({EventKind.SUCCEEDED, EventKind.FAILED, EventKind.TIMED_OUT, EventKind.CANCELLED})


class Event(NamedTuple):
    """One thing that happened to the node at ``path`` at trio time ``time``.

    ``node`` is the node's kind (``leaf``, ``seq``, ``par``, ...);
    ``attempt`` is the attempt of the nearest enclosing ``.retry()`` that
    this run belongs to (1 outside any retry; on ``retried``, the attempt
    that starts now, so 2 for the first retry); ``error`` is the
    error value on ``failed``, ``timed_out`` and ``retried`` (on ``failed``
    it may be the exception a buggy agent raised, which then propagates).
    A node that runs several times (retries) emits a ``started`` and one
    terminal event per run.

    ``value`` is the success value on ``succeeded``: so a run that fails
    still reports, through its observer, every result that did finish
    (the siblings a fail-fast ``|`` cancelled, the steps before a failure).

    Events are named tuples rather than attrs classes: a run emits two per
    node, and a tuple is built in half the time.

    >>> from combinators import Recorder, pure, run_sync
    >>> rec = Recorder()
    >>> _ = run_sync(pure(str.upper).named("up"), "a", observer=rec)
    >>> done = rec.events[-1]
    >>> done.kind.value, done.path, done.node, done.value
    ('succeeded', 'up', 'leaf', 'A')
    """

    kind: EventKind
    path: str
    time: float
    node: str = ""
    attempt: int = 1
    error: Any = None
    value: Any = None


class Observer(Protocol):
    """Receives every event of a run, synchronously and in order.

    Any callable taking an :class:`Event` is one; keep it quick (it runs in
    the run's task), and hand slow work to a channel.

    >>> from combinators import pure, run_sync
    >>> paths = []
    >>> def log(event: Event) -> None:
    ...     paths.append(f"{event.kind.value} {event.path}")
    >>> _ = run_sync(pure(abs).named("abs"), -2, observer=log)
    >>> paths
    ['started abs', 'succeeded abs']
    """

    def __call__(self, event: Event) -> None: ...


#: The attempt number of the nearest enclosing ``.retry()`` (1 outside any);
#: set by the retry rule only when a run is observed.
ATTEMPT: ContextVar[int] = ContextVar("combinators_attempt", default=1)

#: The observer of the run in progress and its clock reader.  An observed
#: plan does not hold its observer: ``observing`` sets this at the root of
#: each run, so one compiled plan serves every run of its tree.
SINK: ContextVar[tuple[Observer, Callable[[], float]]] = ContextVar("combinators_sink")


@attrs.frozen
class Observers:
    """Several observers combined into one; each sees every event."""

    observers: Sequence[Observer]

    def __call__(self, event: Event) -> None:
        for observer in self.observers:
            observer(event)


def combine_observers(*observers: Observer) -> Observer:
    """One observer that forwards each event to all of ``observers``, in order.

    Exported as ``combine_observers`` (and under its first name ``combine``).

    >>> a, b = Recorder(), Recorder()
    >>> both = combine_observers(a, b)
    >>> both(Event(EventKind.STARTED, "x", 0.0))
    >>> len(a.events), len(b.events)
    (1, 1)
    """
    return Observers(tuple(observers))


#: The first name of :func:`combine_observers`, kept so existing code runs.
combine = combine_observers


@attrs.define
class Recorder:
    """An observer that keeps every event in a list (tests, reports).

    >>> from combinators import pure, run_sync
    >>> rec = Recorder()
    >>> _ = run_sync(pure(abs).named("a"), -1, observer=rec)
    >>> [(e.kind.value, e.path) for e in rec.events]
    [('started', 'a'), ('succeeded', 'a')]
    """

    events: list[Event] = attrs.Factory(list)

    def __call__(self, event: Event) -> None:
        self.events.append(event)


#: ``new_event(Event, fields)`` builds an event from all seven fields.  Two
#: events per node make this the observer's hot path, and ``tuple.__new__``
#: called directly takes half the time of ``Event(...)``.
new_event = tuple.__new__


def clock_reader() -> Callable[[], float]:
    """The running clock's ``current_time``, looked up once per run.

    Same readings as ``trio.current_time()``, without finding the run's
    clock again for every event.  Outside a trio run, ``trio.current_time``.
    """
    try:
        return trio.lowlevel.current_clock().current_time
    except RuntimeError:
        return trio.current_time


def observing(observer: Observer, plan: Runner) -> Runner:
    """The root of one observed run: ``plan`` with ``observer`` as the run's sink."""

    async def run_observing(x: Any, path: str) -> Result[Any, Any]:
        token = SINK.set((observer, clock_reader()))
        try:
            return await plan(x, path)
        finally:
            SINK.reset(token)

    return run_observing


def tell(observer: Observer, event: Event) -> None:
    """Give ``event`` to ``observer``; an exception it raises is noted as the observer's.

    An observer's bug is not the node's: the note names the observer and
    the path of the event it was given (and the node's own note is then not
    added).  The hot calls (``started``, ``succeeded``) inline this, since a
    ``try`` costs nothing until something raises and a call does.
    """
    try:
        observer(event)
    except Exception as exc:
        note_function(exc, "observer", observer, event.path)
        raise


def observed(node: Agent[Any, Any, Any], runner: Runner) -> Runner:
    """Wrap a runner so the node's start and outcome reach the run's observer."""
    kind = node.kind

    async def run_observed(x: Any, path: str) -> Result[Any, Any]:
        observer, now = SINK.get()
        attempt = ATTEMPT.get()
        try:
            observer(new_event(Event, (STARTED, path, now(), kind, attempt, None, None)))
        except Exception as exc:  # ``tell``, inlined (hot)
            note_function(exc, "observer", observer, path)
            raise
        try:
            result = await runner(x, path)
        except Exception as exc:
            # A bug in an agent: the node failed (the exception propagates).
            tell(observer, new_event(Event, (FAILED, path, now(), kind, attempt, exc, None)))
            raise
        except BaseException:
            tell(observer, new_event(Event, (CANCELLED, path, now(), kind, attempt, None, None)))
            raise
        if isinstance(result, Failure):
            error = result._inner_value
            terminal = TIMED_OUT if isinstance(error, TimedOut) and error.path == path else FAILED
            tell(observer, new_event(Event, (terminal, path, now(), kind, attempt, error, None)))
        else:
            try:
                observer(new_event(Event, (SUCCEEDED, path, now(), kind, attempt, None, result._inner_value)))
            except Exception as exc:  # ``tell``, inlined (hot)
                note_function(exc, "observer", observer, path)
                raise
        return result

    run_observed._observed = True  # type: ignore[attr-defined]
    return run_observed


def emit(kind: EventKind, path: str, **fields: Any) -> None:
    """Send one event to the run's observer, if the run is observed (used by combinators)."""
    sink = SINK.get(None)
    if sink is not None:
        observer, now = sink
        tell(observer, Event(kind, path, now(), **fields))
