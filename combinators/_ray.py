"""Leaves as Ray tasks: the ``ray_cluster(...)`` executor (extra ``combinators[ray]``).

Ray is imported only when a ``ray_cluster()`` is built, so the package works
without it.  A leaf's function becomes one Ray task; the trio task waits
for it without blocking trio's thread and without a thread per task: the
task's ``ObjectRef`` gives a future whose done-callback (run on a Ray
thread) wakes the trio task through ``TrioToken.run_sync_soon``.  A trio
cancel becomes ``ray.cancel(ref, force=True)``, which kills the worker
running the task.

Ray is connected lazily, on the first leaf that runs (in a worker thread,
since ``ray.init`` blocks for seconds): to ``address`` when given, else to a
new local cluster.  If Ray is already initialised in this process, that
connection is used as it is.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar, final

import attrs
import trio

from ._exceptions import BuildError
from ._executor_api import call_in_worker, require_picklable, unwrap_outcome

_T = TypeVar("_T")
_R = TypeVar("_R")

_INIT_LOCK = threading.Lock()


#: One event per live owner thread (see ``RayCluster.connect``); set to end it.
_OWNERS: list[threading.Event] = []


def _init_on_owner_thread(init: Callable[[], None]) -> None:
    """Run ``init`` on a daemon thread that then waits until shutdown."""
    started = threading.Event()
    stop = threading.Event()
    errors: list[BaseException] = []

    def owner() -> None:
        try:
            init()
        except BaseException as exc:
            errors.append(exc)
            stop.set()
        finally:
            started.set()
        stop.wait()

    threading.Thread(target=owner, name="combinators-ray-owner", daemon=True).start()
    started.wait()
    if errors:
        raise errors[0]
    _OWNERS.append(stop)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        msg = "ray_cluster() needs Ray: install the extra with `pip install 'combinators[ray]'`"
        raise ImportError(msg) from exc
    return ray


@final
@attrs.frozen(eq=False)
class RayCluster:
    """Ray tasks as an executor; build with :func:`ray_cluster`.

    Building one connects nothing: the first leaf that runs on it does.

    >>> cluster = ray_cluster("ray://head:10001")
    >>> cluster.name, cluster.address
    ('ray', 'ray://head:10001')
    """

    address: str | None
    init_kwargs: Mapping[str, Any]
    task_options: Mapping[str, Any]
    _remote: list[Any] = attrs.field(factory=list, init=False)
    @property
    def name(self) -> str:
        """A short name for messages."""
        return "ray"

    def check(self, fn: Callable[[Any], Any], where: str) -> None:
        """Refuse a function that Ray's cloudpickle cannot send."""
        ray = _import_ray()
        require_picklable(fn, where, ray.cloudpickle.dumps, "cloudpickle")

    def connect(self) -> None:
        """Initialise Ray (blocking) unless this process already is connected.

        Safe from any thread: off the main thread, ``ray.init`` runs on a
        thread that lives until :meth:`shutdown`, because Ray binds the
        life of the local cluster's processes to the *thread* that started
        them (Linux ``PR_SET_PDEATHSIG``), and trio retires idle worker
        threads after a few seconds.
        """
        ray = _import_ray()
        with _INIT_LOCK:
            if ray.is_initialized():
                return
            kwargs: dict[str, Any] = {"include_dashboard": False}
            local = self.address is None and "runtime_env" not in self.init_kwargs
            if local:
                kwargs["runtime_env"] = _local_runtime_env()
            kwargs.update(self.init_kwargs)

            def init() -> None:
                with _uv_run_hook_off(local):
                    ray.init(address=self.address, **kwargs)

            if threading.current_thread() is threading.main_thread():
                init()
            else:
                _init_on_owner_thread(init)

    def shutdown(self) -> None:
        """Disconnect from Ray (and stop the local cluster it started)."""
        ray = _import_ray()
        with _INIT_LOCK:
            ray.shutdown()
            self._remote.clear()
            while _OWNERS:
                _OWNERS.pop().set()  # let the owner thread end

    def _remote_fn(self) -> Any:
        if not self._remote:
            ray = _import_ray()
            options: dict[str, Any] = {"max_retries": 0}
            options.update(self.task_options)
            self._remote.append(ray.remote(call_in_worker).options(**options))
        return self._remote[0]

    async def call(self, fn: Callable[[_T], _R], x: _T) -> _R:
        """Run ``fn(x)`` as a Ray task; a trio cancel force-cancels the task."""
        ray = _import_ray()
        if not ray.is_initialized():
            await trio.to_thread.run_sync(self.connect)
        ref = self._remote_fn().remote(fn, x)
        try:
            outcome = await wait_ref(ref)
        except BaseException:
            # Cancelled (or KeyboardInterrupt): the task must not go on.
            ray.cancel(ref, force=True)
            raise
        value: _R = unwrap_outcome(outcome, "ray task")
        return value


@contextlib.contextmanager
def _uv_run_hook_off(off: bool) -> Iterator[None]:
    """Keep Ray from rebuilding the driver's ``uv run`` environment for local workers.

    Under ``uv run``, Ray (2.45+) makes each worker ``uv run`` a copy of the
    working directory in a fresh virtualenv, which is slow and drops
    optional extras such as ``ray`` itself.  Local workers should run this
    very interpreter, as spawned processes do.  The switch is a private Ray
    constant read when ``ray.init`` runs; if it moves, nothing is changed.
    """
    constants: Any = None
    if off:
        try:
            constants = importlib.import_module("ray._private.ray_constants")
        except ImportError:
            constants = None
    saved = getattr(constants, "RAY_ENABLE_UV_RUN_RUNTIME_ENV", None)
    if saved is None:
        yield
        return
    constants.RAY_ENABLE_UV_RUN_RUNTIME_ENV = False
    try:
        yield
    finally:
        constants.RAY_ENABLE_UV_RUN_RUNTIME_ENV = saved


def _local_runtime_env() -> dict[str, Any]:
    """Let local workers import what the driver imports (as spawned processes can).

    The driver's own ``sys.path`` entries outside the interpreter's install
    (the project, a test folder) go to the workers' ``PYTHONPATH``.
    """
    prefixes = tuple({os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)})
    extra = [
        os.path.realpath(p or os.getcwd())
        for p in sys.path
        if os.path.isdir(p or os.getcwd()) and not os.path.realpath(p or os.getcwd()).startswith(prefixes)
    ]
    if os.environ.get("PYTHONPATH"):
        extra.append(os.environ["PYTHONPATH"])
    return {"env_vars": {"PYTHONPATH": os.pathsep.join(dict.fromkeys(extra))}} if extra else {}


async def wait_ref(ref: Any) -> Any:
    """Await a Ray ``ObjectRef`` from trio without blocking trio's thread.

    The ref's future calls back on a Ray thread when the object is ready;
    the callback only schedules ``done.set`` into this trio run.
    """
    token = trio.lowlevel.current_trio_token()
    done = trio.Event()

    def wake(_: object) -> None:
        try:
            token.run_sync_soon(done.set)
        except trio.RunFinishedError:
            pass  # the run ended (it was cancelled): nobody is waiting

    future = ref.future()
    future.add_done_callback(wake)
    await done.wait()
    return future.result()


def ray_cluster(
    address: str | None = None,
    *,
    task_options: Mapping[str, Any] | None = None,
    **init_kwargs: Any,
) -> RayCluster:
    """Run leaf functions as Ray tasks (optional extra ``combinators[ray]``).

    ``address`` is an existing cluster (``"ray://host:10001"``, ``"auto"``);
    with none, the first leaf starts a local cluster (``init_kwargs`` go to
    ``ray.init``, e.g. ``num_cpus=2``; the dashboard is off unless asked
    for).  ``task_options`` go to ``.options()`` of every task (``num_cpus``,
    ``memory``, ``runtime_env``...); tasks are never retried by Ray
    (``max_retries=0``): retrying is ``.retry()``'s job.

    >>> from combinators import pure
    >>> cluster = ray_cluster(num_cpus=2, task_options={"num_cpus": 1})
    >>> cluster.init_kwargs, cluster.task_options
    ({'num_cpus': 2}, {'num_cpus': 1})
    >>> tree = pure(abs).on(cluster)  # nothing starts until it runs
    """
    _import_ray()
    if address is not None and not isinstance(address, str):
        msg = f"ray_cluster(): address must be a string or None, got {address!r}"
        raise BuildError(msg)
    return RayCluster(address, dict(init_kwargs), dict(task_options or {}))
