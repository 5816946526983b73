"""combinators: a typed combinator DSL for orchestrating async agents on trio.

Layering (dependencies point one way):

* ``_expr`` is pure data: frozen nodes and operators; it imports no trio.
* ``_plan`` compiles a tree into runners through a registry of rules; the
  rules live next to the features (``_run`` for the core, ``_fanout``,
  ``_workflow``, ``_control`` ...).
* ``_run`` holds ``run``/``run_sync``: the only entry points that run trees.
* ``_observe`` (events), ``_limits`` (admission) and ``_retry`` (backoff)
  serve the interpreter; ``orchestration`` is the object-style API on top.
"""

from __future__ import annotations

from ._exceptions import AgentTypeError as AgentTypeError
from ._exceptions import AllFailed as AllFailed
from ._exceptions import BuildError as BuildError
from ._exceptions import Crashed as Crashed
from ._exceptions import CycleError as CycleError
from ._exceptions import GaveUp as GaveUp
from ._exceptions import NoMajority as NoMajority
from ._exceptions import TimedOut as TimedOut
from ._expr import Agent as Agent
from ._expr import Parallel as Parallel
from ._expr import Priority as Priority
from ._expr import agent as agent
from ._expr import both as both
from ._expr import fail as fail
from ._expr import lift as lift
from ._expr import pure as pure
from ._expr import succeed as succeed
from ._expr import then as then
from ._limits import PriorityLimiter as PriorityLimiter
from ._observe import Event as Event
from ._observe import EventKind as EventKind
from ._observe import Observer as Observer
from ._observe import Recorder as Recorder
from ._observe import combine as combine
from ._retry import Backoff as Backoff
from ._retry import RetryAfter as RetryAfter
from ._run import run as run
from ._run import run_sync as run_sync

__all__ = [
    "Agent",
    "AgentTypeError",
    "AllFailed",
    "Backoff",
    "BuildError",
    "Crashed",
    "CycleError",
    "Event",
    "EventKind",
    "GaveUp",
    "NoMajority",
    "Observer",
    "Parallel",
    "Priority",
    "PriorityLimiter",
    "Recorder",
    "RetryAfter",
    "TimedOut",
    "agent",
    "both",
    "combine",
    "fail",
    "lift",
    "pure",
    "run",
    "run_sync",
    "succeed",
    "then",
]
