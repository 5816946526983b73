"""combinators: a typed combinator DSL for orchestrating async agents on trio.

Layering (dependencies point one way, no cycle; docs/architecture.md,
checked by tests/test_layers.py):

* base and values: ``_exceptions`` (every error, and ``Usage``), ``_check``
  (argument checks), ``_types``, ``_limits``, ``_retry``, and the
  interfaces of what plugs in: ``_budget``, ``_cache_store``,
  ``_executor_api``.
* ``_expr`` is the tree: frozen nodes and operators, every node an
  ``Agent`` method builds; it imports nothing above the values.
* the interpreter: ``_plan`` compiles a tree into runners through a
  registry of rules that live next to their features (``_run``, ``_chain``,
  ``_control``, ``_fanout``, ``_workflow``, ``_executors``, ``_spend``);
  ``_run`` holds ``run``/``run_sync``, the only entry points that run trees.
* readers (``_json``, ``_report``, ``_trace``, ``_mermaid``, ``_estimate``),
  then what plugs into a run (journals, caches, shared budgets, process
  pools, Ray, observers), registered by ``_plugins``.
* on top: ``orchestration`` (the object-style API, building trees from the
  public names and ``_internal``, the internal API, through which
  ``_orchestration_pool`` adds its one node kind, the task pool),
  ``testing``, ``aio`` (trio guest runs on asyncio) and ``_cli``.
"""

from __future__ import annotations

from ._cache_store import Cache as Cache
from ._control import repeat as repeat
from ._control import switch as switch
from ._control import when as when
from ._exceptions import AgentTypeError as AgentTypeError
from ._exceptions import AllFailed as AllFailed
from ._exceptions import BuildError as BuildError
from ._exceptions import Crashed as Crashed
from ._exceptions import CycleError as CycleError
from ._exceptions import ForeignException as ForeignException
from ._exceptions import GaveUp as GaveUp
from ._exceptions import JournalCorrupt as JournalCorrupt
from ._exceptions import JournalMismatch as JournalMismatch
from ._exceptions import JournalWriteError as JournalWriteError
from ._exceptions import NoBranch as NoBranch
from ._exceptions import NodeCancelled as NodeCancelled
from ._exceptions import NodeFailed as NodeFailed
from ._exceptions import NodeOutcome as NodeOutcome
from ._exceptions import NodeSkipped as NodeSkipped
from ._exceptions import NodeSucceeded as NodeSucceeded
from ._exceptions import NoMajority as NoMajority
from ._exceptions import OverBudget as OverBudget
from ._exceptions import RemoteError as RemoteError
from ._exceptions import TimedOut as TimedOut
from ._exceptions import Usage as Usage
from ._exceptions import WorkflowFailed as WorkflowFailed
from ._executor_api import Executor as Executor
from ._executor_api import in_task as in_task
from ._executor_api import remote_traceback as remote_traceback
from ._processes import ProcessPool as ProcessPool
from ._processes import processes as processes
from ._expr import Agent as Agent
from ._estimate import Estimate as Estimate
from ._estimate import Unbounded as Unbounded
from ._estimate import estimate as estimate
from ._budget import Budget as Budget
from ._budget import Charge as Charge
from ._budget import SpendLimit as SpendLimit
from ._budget import charge as charge
from ._expr import Parallel as Parallel
from ._expr import Priority as Priority
from ._expr import agent as agent
from ._expr import both as both
from ._expr import fail as fail
from ._expr import lift as lift
from ._expr import pure as pure
from ._expr import succeed as succeed
from ._expr import then as then
from ._fanout import Confident as Confident
from ._fanout import HasConfidence as HasConfidence
from ._fanout import aggregate as aggregate
from ._fanout import average_confidence as average_confidence
from ._fanout import collect as collect
from ._fanout import each as each
from ._fanout import first_success as first_success
from ._fanout import vote as vote
from ._json import converter as converter
from ._journal_store import Journal as Journal
from ._json import converter as json_converter
from ._journal import JournalRecord as JournalRecord
from ._journal import LeafContext as LeafContext
from ._journal import Permanent as Permanent
from ._journal import current_leaf as current_leaf
from ._journal import versioned as versioned
from ._limits import PriorityLimiter as PriorityLimiter
from ._limits import StartWindow as StartWindow
from ._mermaid import Block as Block
from ._mermaid import MermaidGraph as MermaidGraph
from ._mermaid import to_mermaid as to_mermaid
from ._observe import Event as Event
from ._observe import EventKind as EventKind
from ._observe import Observer as Observer
from ._observe import Recorder as Recorder
from ._observe import combine as combine
from ._observe import combine_observers as combine_observers
from ._progress import Progress as Progress
from ._ray import RayCluster as RayCluster
from ._ray import ray_cluster as ray_cluster
from ._report import NodeReport as NodeReport
from ._report import NodeStatus as NodeStatus
from ._report import RunReport as RunReport
from ._report import build_report as build_report
from ._retry import Backoff as Backoff
from ._retry import RetryAfter as RetryAfter
from ._run import run as run
from ._run import run_sync as run_sync
from ._stream import Outcomes as Outcomes
from ._stream import stream as stream
from ._trace import trace_events as trace_events
from ._trace import write_trace as write_trace
from ._handles import Node as Node
from ._workflow import Workflow as Workflow
from ._workflow import WorkflowResult as WorkflowResult
from . import _plugins as _plugins  # registers the storage backends

__all__ = [
    "Agent",
    "AgentTypeError",
    "AllFailed",
    "Backoff",
    "Budget",
    "BuildError",
    "Cache",
    "Charge",
    "Confident",
    "Crashed",
    "CycleError",
    "Estimate",
    "Event",
    "EventKind",
    "Executor",
    "ForeignException",
    "GaveUp",
    "HasConfidence",
    "Journal",
    "JournalCorrupt",
    "JournalMismatch",
    "JournalRecord",
    "JournalWriteError",
    "LeafContext",
    "NoBranch",
    "NoMajority",
    "Node",
    "NodeCancelled",
    "NodeFailed",
    "NodeOutcome",
    "NodeReport",
    "NodeSkipped",
    "NodeStatus",
    "NodeSucceeded",
    "Observer",
    "Outcomes",
    "OverBudget",
    "Parallel",
    "Permanent",
    "Priority",
    "PriorityLimiter",
    "ProcessPool",
    "Progress",
    "RayCluster",
    "Recorder",
    "RemoteError",
    "RetryAfter",
    "RunReport",
    "StartWindow",
    "TimedOut",
    "Unbounded",
    "Usage",
    "Workflow",
    "WorkflowFailed",
    "WorkflowResult",
    "agent",
    "aggregate",
    "average_confidence",
    "both",
    "build_report",
    "charge",
    "collect",
    "combine_observers",
    "current_leaf",
    "each",
    "estimate",
    "fail",
    "first_success",
    "in_task",
    "json_converter",
    "lift",
    "processes",
    "pure",
    "ray_cluster",
    "remote_traceback",
    "repeat",
    "run",
    "run_sync",
    "stream",
    "succeed",
    "switch",
    "then",
    "to_mermaid",
    "trace_events",
    "versioned",
    "vote",
    "when",
    "write_trace",
]

#: Importable for code written against earlier versions, but not the public
#: surface (docs/decisions.md, "Public surface"): ``combine`` and
#: ``converter`` are the first names of ``combine_observers`` and
#: ``json_converter``; ``Block`` and ``MermaidGraph`` are the drawing API of
#: node classes inside the package; ``SpendLimit`` only types ``budget=``.
_NOT_EXPORTED = ("Block", "MermaidGraph", "SpendLimit", "combine", "converter")

__test__ = {
    # Values and type aliases carry no docstring of their own: their
    # examples live here, where doctest finds them.
    "json_converter": """The cattrs converter that turns inputs, outputs, errors and reports into JSON and back.

    The journal and the cache use it unless given ``converter=``; register
    hooks on it (or on a copy) for types cattrs does not know.

    >>> from returns.result import Failure, Result
    >>> from combinators import TimedOut, json_converter
    >>> data = json_converter.unstructure(Failure(TimedOut("p/fetch", 2.0)))
    >>> data
    {'failure': {'path': 'p/fetch', 'seconds': 2.0, 'type': 'TimedOut'}}
    >>> json_converter.structure(data, Result[int, TimedOut])
    <Failure: TimedOut(path='p/fetch', seconds=2.0)>
    """,
    "NodeOutcome": """What became of one workflow node: a type alias of the four outcome records.

    :class:`NodeSucceeded`, :class:`NodeFailed`, :class:`NodeSkipped` or
    :class:`NodeCancelled`, as :attr:`WorkflowFailed.outcomes` holds them.

    >>> from combinators import NodeFailed, NodeOutcome, Workflow, fail, run_sync
    >>> wf, bad = Workflow.start(int).add("bad", fail("down"))
    >>> outcome: NodeOutcome[str] = run_sync(wf.build(), 7).failure().outcome(bad)
    >>> match outcome:
    ...     case NodeFailed(error):
    ...         print("failed with", error)
    failed with down
    """,
}
