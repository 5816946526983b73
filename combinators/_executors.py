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

The :class:`Executor` interface and the worker-side helpers live in
``_executor_api``; the process pool in ``_processes``.

Exceptions raised by the function in a worker come back as themselves (the
same class and arguments), with the worker-side traceback kept as text: in a
note on the exception and through :func:`remote_traceback`.  ``lift`` turns
them into ``Crashed`` exactly as in-process; ``pure`` lets them propagate.
"""

from __future__ import annotations

from typing import Any

import attrs
from returns.result import Failure, Result, Success

from ._exceptions import Crashed
from ._executor_api import Executor, InTask
from ._expr import Leaf, LeafMode, OnExecutor
from ._notes import note_node
from ._plan import Compiler, Env, compiles, segments
from ._types import Runner


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
