"""The task pool of ``ParallelOrchestrator``: named task trees run at most ``n`` at once.

The one node kind the object-style layer adds (docs/orchestration.md, "The
task pool").  It lives with that layer: no core combinator uses it.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, TypeAlias, final

import attrs
from returns.result import Failure, Result, Success

from ._cancel import keep_first_crash, open_nursery
from ._expr import Agent
from ._fanout import _start_pulling
from ._plan import Compiler, Env, compiles, segments
from ._types import Runner, _Err_co, _In_contra, _Out_co
from ._workflow import NodeCancelled

#: Which outcome of a task stops a :class:`TaskPool` (None: none does).
Stop: TypeAlias = Literal["failure", "success"] | None


@final
@attrs.frozen(eq=False, repr=False)
class TaskPool(Agent[_In_contra, _Out_co, _Err_co]):
    """Named task trees run at most ``width`` at once; ``{name: Result}`` for every task.

    ``order`` is the admission order (priority, then task order);
    ``stop`` is the kind of outcome that cancels the rest (``"failure"``:
    fail-fast, ``"success"``: the first success wins, ``None``: every task
    runs to its end).  The pool itself never fails: a task cancelled that
    way is ``Failure(NodeCancelled(started))``.
    """

    operands: tuple[Agent[Any, Any, Any], ...]
    order: tuple[int, ...]
    width: int | None
    stop: Stop
    kind: ClassVar[str] = "tasks"

    def _repr_parts(self) -> list[object]:
        parts: list[object] = ["tasks("]
        for i, kid in enumerate(self.operands):
            if i:
                parts.append(", ")
            parts.append(kid)
        if self.width is not None:
            parts.append(f", max_concurrency={self.width}")
        if self.stop is not None:
            parts.append(f", stop_at={self.stop!r}")
        parts.append(")" if self.label is None else f").named({self.label!r})")
        return parts


@compiles(TaskPool)
def _compile_task_pool(c: Compiler, node: TaskPool[Any, Any, Any], env: Env) -> Runner:
    """One nursery.  Without a width every task starts at once; with width
    ``n``, ``n`` worker tasks pull the next task index from one shared
    iterator in admission order, the way ``each`` does under a limit: a task
    takes its slot *before* it starts, so a waiting task holds no trio task,
    no timeout is running for it, and admission does not depend on the order
    in which trio happens to schedule tasks of the same instant.  A ``stop``
    outcome cancels the nursery's scope; tasks never taken report
    ``NodeCancelled(started=False)``.
    """
    runners_: list[Runner] = []
    for op in node.operands:  # a loop: no frame of its own per level (MAX_DEPTH)
        runners_.append(c.compile(op, env))
    runners = tuple(runners_)
    segs = segments(node.operands)
    names = tuple(op.name for op in node.operands)
    order, width = node.order, node.width
    stop: type[Result[Any, Any]] | None = Failure if node.stop == "failure" else Success if node.stop == "success" else None
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

            _start_pulling(nursery, None if width is None else min(width, n), take, one)
        if crash:
            raise crash[0]
        return Success(
            {
                names[i]: outcome if outcome is not None else Failure(NodeCancelled(started[i]))
                for i, outcome in enumerate(outcomes)
            }
        )

    return run_task_pool
