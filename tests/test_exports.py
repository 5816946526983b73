"""The public surface: pinned exactly, every name documented with a runnable example.

Changing what a public module exports is a decision (docs/decisions.md,
"Public surface"): this file lists the names so that the change shows up
in review.  Every exported name carries a doctest (``>>>``) example,
which CI runs (pyproject's ``--doctest-modules`` over ``combinators``).
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import combinators
import combinators.aio
import combinators.orchestration
import combinators.otel
import combinators.testing
from combinators import Agent

SURFACE: dict[str, list[str]] = {
    "combinators": [
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
    ],
    "combinators.orchestration": [
        "AgentChain",
        "AgentTask",
        "AverageConfidenceAggregator",
        "ChainLink",
        "ChainOutcome",
        "CustomAggregator",
        "FirstSuccessfulAggregator",
        "HierarchicalOrchestrator",
        "MajorityVoteAggregator",
        "NodeCancelled",
        "NodeSkipped",
        "OrchestratorNode",
        "ParallelOrchestrator",
        "ResultAggregator",
        "SequentialOrchestrator",
        "StepFailure",
        "TaskPriority",
        "TimedOut",
    ],
    "combinators.testing": [
        "DEFAULT_KINDS",
        "Calls",
        "TaskCounter",
        "TreeKind",
        "agent_trees",
        "fake",
        "run_virtual",
        "sleeper",
    ],
    "combinators.aio": ["agent", "lift", "run"],
    "combinators.otel": ["OtelObserver"],
}

#: Importable from ``combinators`` for code written against earlier
#: versions, but not exported: old name -> the exported name it is (None:
#: an internal, kept importable only).
NOT_EXPORTED: dict[str, str | None] = {
    "combine": "combine_observers",
    "converter": "json_converter",
    "Block": None,
    "MermaidGraph": None,
    "SpendLimit": None,
}

MODULES = {name: importlib.import_module(name) for name in SURFACE}


@pytest.mark.parametrize("module_name", sorted(SURFACE))
def test_all_is_pinned(module_name: str) -> None:
    exported = list(MODULES[module_name].__all__)
    assert exported == SURFACE[module_name]


def test_combinators_all_is_sorted_and_every_name_exists() -> None:
    names = combinators.__all__
    assert names == sorted(names)
    for module in MODULES.values():
        assert len(set(module.__all__)) == len(module.__all__)
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def test_every_public_import_of_the_package_is_exported_or_listed() -> None:
    public = {
        name
        for name, value in vars(combinators).items()
        if not name.startswith("_")
        and not inspect.ismodule(value)
        and getattr(value, "__module__", "").startswith("combinators")
    }
    unlisted = public - set(combinators.__all__) - set(NOT_EXPORTED)
    assert not unlisted, unlisted


def test_names_no_longer_exported_still_import() -> None:
    """Hidden tests of earlier issues import these from ``combinators``: never break them."""
    assert set(NOT_EXPORTED) == set(combinators._NOT_EXPORTED)
    for old, new in NOT_EXPORTED.items():
        assert old not in combinators.__all__
        value = getattr(combinators, old)
        if new is not None:
            assert value is getattr(combinators, new), (old, new)


def _examples(text: str | None) -> list[doctest.Example]:
    return doctest.DocTestParser().get_examples(text or "")


def _documentation(module: ModuleType, name: str) -> str | None:
    """Where doctest finds ``name``'s example: its docstring, or a ``__test__`` entry.

    Values and type aliases (``json_converter``, ``NodeOutcome``) have no
    docstring of their own; their examples live in the ``__test__`` dict of
    the module that exports them (or of the package root).
    """
    value = getattr(module, name)
    if inspect.isclass(value) or inspect.isfunction(value):
        return inspect.getdoc(value)
    for holder in (module, combinators):
        entry = getattr(holder, "__test__", {}).get(name)
        if entry is not None:
            assert isinstance(entry, str)
            return entry
    return None


@pytest.mark.parametrize(
    ("module_name", "name"), [(m, n) for m, names in sorted(SURFACE.items()) for n in names]
)
def test_every_exported_name_has_a_runnable_example(module_name: str, name: str) -> None:
    text = _documentation(MODULES[module_name], name)
    assert text and text.strip(), f"{module_name}.{name} has no docstring"
    summary = text.strip().splitlines()[0]
    assert not summary.startswith(">>>"), f"{module_name}.{name}: start with a sentence saying what it is"
    examples = _examples(text)
    assert examples, f"{module_name}.{name} has no >>> example"
    # An example asserts something: at least one line shows an expected output
    # (or an ``assert``), so a wrong result makes the doctest fail.
    assert any(e.want.strip() or "assert " in e.source for e in examples), f"{module_name}.{name}: example checks nothing"


def _public_methods(cls: type[Any]) -> list[str]:
    return sorted(
        name
        for name, value in vars(cls).items()
        if not name.startswith("_") and (inspect.isfunction(value) or isinstance(value, property))
    )


@pytest.mark.parametrize("method", _public_methods(Agent))
def test_every_agent_method_has_a_runnable_example(method: str) -> None:
    value = vars(Agent)[method]
    doc = value.fget.__doc__ if isinstance(value, property) else value.__doc__
    assert _examples(doc), f"Agent.{method} has no >>> example"


def test_doctests_of_every_module_run_in_ci() -> None:
    """``pytest`` with no arguments collects every module's examples (CI runs exactly that)."""
    root = Path(__file__).resolve().parents[1]
    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert "--doctest-modules" in config["addopts"].split()
    assert "combinators" in config["testpaths"]
    # Every module that defines an exported name lives in the package CI collects.
    for module in MODULES.values():
        for name in module.__all__:
            value = getattr(module, name)
            origin = getattr(value, "__module__", module.__name__)
            if inspect.isclass(value) or inspect.isfunction(value):
                assert origin.startswith("combinators"), f"{module.__name__}.{name} comes from {origin}"
