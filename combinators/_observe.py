"""Events a run emits, and the observer protocol that receives them.

Every compiled node reports ``started`` and exactly one terminal event
(``succeeded``, ``failed``, ``timed_out`` or ``cancelled``) with its path and
trio time; retries add ``retried`` events between attempts.  With no
observer the interpreter compiles runners without any of this, so an
unobserved run pays nothing.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any, Protocol

import attrs
import trio
from returns.result import Failure, Result

from ._exceptions import TimedOut
from ._expr import Agent
from ._types import Runner


class EventKind(enum.Enum):
    """What happened to a node."""

    STARTED = "started"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    RETRIED = "retried"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"


TERMINAL = frozenset({EventKind.SUCCEEDED, EventKind.FAILED, EventKind.TIMED_OUT, EventKind.CANCELLED})


@attrs.frozen
class Event:
    """One thing that happened to the node at ``path`` at trio time ``time``.

    ``kind_name`` is the node's kind (``leaf``, ``seq``, ``par``, ...);
    ``attempt`` counts from 1 and grows with retries; ``error`` is set on
    ``failed``, ``timed_out`` and ``retried``.
    """

    kind: EventKind
    path: str
    time: float
    node: str = ""
    attempt: int = 1
    error: Any = None


class Observer(Protocol):
    """Receives every event of a run, synchronously and in order."""

    def __call__(self, event: Event) -> None: ...


@attrs.frozen
class Observers:
    """Several observers combined into one; each sees every event."""

    observers: Sequence[Observer]

    def __call__(self, event: Event) -> None:
        for observer in self.observers:
            observer(event)


def combine(*observers: Observer) -> Observer:
    """One observer that forwards each event to all of ``observers``."""
    return Observers(tuple(observers))


@attrs.define
class Recorder:
    """An observer that keeps every event in a list (tests, reports)."""

    events: list[Event] = attrs.Factory(list)

    def __call__(self, event: Event) -> None:
        self.events.append(event)


def observed(observer: Observer, node: Agent[Any, Any, Any], runner: Runner) -> Runner:
    """Wrap a runner so the node's start and outcome reach ``observer``."""
    kind = node.kind

    async def run_observed(x: Any, path: str) -> Result[Any, Any]:
        observer(Event(EventKind.STARTED, path, trio.current_time(), kind))
        try:
            result = await runner(x, path)
        except BaseException:
            observer(Event(EventKind.CANCELLED, path, trio.current_time(), kind))
            raise
        if isinstance(result, Failure):
            error = result.failure()
            terminal = (
                EventKind.TIMED_OUT
                if isinstance(error, TimedOut) and error.path == path
                else EventKind.FAILED
            )
            observer(Event(terminal, path, trio.current_time(), kind, error=error))
        else:
            observer(Event(EventKind.SUCCEEDED, path, trio.current_time(), kind))
        return result

    run_observed._observed = True  # type: ignore[attr-defined]
    return run_observed


def emit(observer: Observer | None, kind: EventKind, path: str, **fields: Any) -> None:
    """Send one event if there is an observer (used by combinators)."""
    if observer is not None:
        observer(Event(kind, path, trio.current_time(), **fields))

