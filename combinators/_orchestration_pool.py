"""The task pool of ``ParallelOrchestrator``: task trees run at most ``n`` at once.

The one node kind the object-style layer adds (docs/orchestration.md, "The
task pool"), with its rule; no core combinator uses it, so it lives here,
plugged in through the internal API like any node kind.  It is not
``each``: each task is its own tree, at its own path ``<pool>/<task
name>``, and the pool reports every task's outcome -- done, failed, or
cancelled before or after it started -- where ``each`` fails fast with the
first failure alone (docs/decisions.md, "The task pool stays with the
orchestrators").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal, Never, TypeAlias, TypeVar, final

import attrs
from returns.result import Failure, Result, Success

from . import Agent, NodeCancelled, Priority
from ._internal import (
    Compiler,
    Env,
    Runner,
    compiles,
    estimates_as_group,
    keep_first_crash,
    open_nursery,
    segments,
    start_pulling,
)

_In_contra = TypeVar("_In_contra", contravariant=True)
_Out_co = TypeVar("_Out_co", covariant=True)
_Err_co = TypeVar("_Err_co", covariant=True)

#: Which outcome of a task stops a :class:`TaskPool` (None: none does).
StopAt: TypeAlias = Literal["failure", "success"] | None

#: What a pool gives: every task's outcome by task name, in task order.
TaskOutcomes: TypeAlias = dict[str, Result[Any, Any]]


@final
@estimates_as_group
@attrs.frozen(eq=False, repr=False)
class TaskPool(Agent[_In_contra, _Out_co, _Err_co]):
    """Task trees run at most ``max_concurrency`` at once; ``{name: Result}`` for every task.

    ``order`` is the admission order (priority, then task order);
    ``stop_at`` is the kind of outcome that cancels the rest (``"failure"``:
    fail-fast, ``"success"``: the first success wins, ``None``: every task
    runs to its end).  The pool itself never fails: a task cancelled that
    way is ``Failure(NodeCancelled(started))``.
    """

    operands: tuple[Agent[Any, Any, Any], ...]
    order: tuple[int, ...]
    max_concurrency: int | None
    stop_at: StopAt
    kind: ClassVar[str] = "tasks"

    def _repr_parts(self) -> list[object]:
        parts: list[object] = ["tasks("]
        for i, kid in enumerate(self.operands):
            if i:
                parts.append(", ")
            parts.append(kid)
        if self.max_concurrency is not None:
            parts.append(f", max_concurrency={self.max_concurrency}")
        if self.stop_at is not None:
            parts.append(f", stop_at={self.stop_at!r}")
        parts.append(")" if self.label is None else f").named({self.label!r})")
        return parts


def task_pool(
    tasks: Sequence[Agent[object, Any, Any]],
    priorities: Sequence[Priority],
    max_concurrency: int | None,
    stop_at: StopAt,
) -> Agent[object, TaskOutcomes, Never]:
    """The pool of ``tasks`` (each a named tree), admitted by priority, then task order."""
    # sorted() is stable: equal priorities keep task order.
    order = tuple(sorted(range(len(tasks)), key=lambda i: -int(priorities[i])))
    return TaskPool(tuple(tasks), order, max_concurrency, stop_at)


@compiles(TaskPool)
def _compile_task_pool(c: Compiler, node: TaskPool[Any, Any, Any], env: Env) -> Runner:
    """One nursery.  Without a bound every task starts at once; with
    ``max_concurrency=n``, ``n`` worker tasks pull the next task index from
    one shared iterator in admission order, the way ``each`` does under a
    limit: a task takes its slot *before* it starts, so a waiting task holds
    no trio task, no timeout is running for it, and admission does not
    depend on the order in which trio happens to schedule tasks of the same
    instant.  A ``stop_at`` outcome cancels the nursery's scope; tasks never
    taken report ``NodeCancelled(started=False)``.
    """
    runners_: list[Runner] = []
    for op in node.operands:  # a loop: no frame of its own per level (MAX_DEPTH)
        runners_.append(c.compile(op, env))
    runners = tuple(runners_)
    segs = segments(node.operands)
    names = tuple(op.name for op in node.operands)
    order, width = node.order, node.max_concurrency
    stop: type[Result[Any, Any]] | None = {"failure": Failure, "success": Success, None: None}[node.stop_at]
    n = len(runners)

    async def run_task_pool(x: Any, path: str) -> Result[Any, Any]:
        outcomes: list[Result[Any, Any] | None] = [None] * n
        started = [False] * n
        stopped: list[int] = []
        crash: list[BaseException] = []
        queue = iter(order)

        async with open_nursery() as nursery:
            scope = nursery.cancel_scope

            def take() -> tuple[int] | None:
                if stopped or crash:  # the scope is cancelled: start nothing more
                    return None
                i = next(queue, None)
                if i is None:
                    return None
                started[i] = True
                return (i,)

            async def one(i: int) -> None:
                try:
                    result = await runners[i](x, path + segs[i])
                except Exception as exc:
                    keep_first_crash(crash, scope, exc)
                    return
                outcomes[i] = result
                if stop is not None and isinstance(result, stop):
                    stopped.append(i)
                    scope.cancel()

            start_pulling(nursery, None if width is None else min(width, n), take, one)
        if crash:
            raise crash[0]
        return Success(
            {
                names[i]: outcome if outcome is not None else Failure(NodeCancelled(started[i]))
                for i, outcome in enumerate(outcomes)
            }
        )

    return run_task_pool
