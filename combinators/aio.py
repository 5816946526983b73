"""Running trees from asyncio programs, and leaves whose coroutine runs on asyncio.

The interpreter stays trio; this module puts it inside asyncio programs
(FastAPI and Starlette services, Jupyter notebooks, LangChain code):

* ``await aio.run(agent, x)`` — :func:`combinators.run` for asyncio code: same
  arguments, same typed ``Result``; any number of concurrent callers share
  one trio guest run on the loop (trio allows one run per thread), and
  cancelling a caller cancels its whole run.
* :func:`agent` / :func:`lift` — leaves whose coroutine must run on asyncio
  (aiohttp, asyncpg, asyncio-only SDKs): ordinary leaves in every other way.
  Under ``aio.run`` they run on the host loop; plain ``run``/``run_sync``
  have no asyncio loop, and a run of a tree with such leaves fails at its
  start saying to use ``aio.run`` (the command line uses it by itself;
  docs/asyncio.md).

httpx, the openai and anthropic SDKs speak trio through anyio and work in
plain ``agent`` leaves; see docs/asyncio.md.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, overload

from returns.result import Result

from ._aio import run as run
from ._aio_leaf import HostCall
from ._exceptions import AgentTypeError, Crashed
from ._expr import Agent, _is_async_callable
from ._expr import agent as _agent
from ._expr import lift as _lift
from ._types import _E, _I, _O

__all__ = ["agent", "lift", "run"]


@overload
def agent(fn: Callable[[_I], Awaitable[Result[_O, _E]]], /) -> Agent[_I, _O, _E]: ...
@overload
def agent(
    *, name: str
) -> Callable[[Callable[[_I], Awaitable[Result[_O, _E]]]], Agent[_I, _O, _E]]: ...
def agent(fn: Any = None, /, *, name: str | None = None) -> Any:
    """Make a leaf from ``async def fn(x) -> Result[Out, Err]`` whose coroutine runs on asyncio.

    Typed, named and run like :func:`combinators.agent` — limited, retried,
    timed out, journaled, observed — but ``fn(x)`` is awaited in an asyncio
    task on the host loop; a cancel in the tree cancels that task and waits
    for it to finish.

    >>> import asyncio
    >>> from returns.result import Success
    >>> from combinators import aio
    >>> @aio.agent
    ... async def nap(s: float) -> Result[float, str]:
    ...     await asyncio.sleep(s)  # asyncio's sleep: no trio here
    ...     return Success(s)
    >>> asyncio.run(aio.run(nap, 0.001))
    <Success: 0.001>
    """
    if fn is None:

        def decorate(f: Any) -> Any:
            made = agent(f)
            return made.named(name) if name is not None else made

        return decorate
    _agent(fn)  # the checks and messages of agent()
    return _agent(HostCall(fn))


@overload
def lift(fn: Callable[[_I], Coroutine[Any, Any, _O]], /) -> Agent[_I, _O, Crashed]: ...
@overload
def lift(fn: Callable[[_I], Awaitable[_O]], /) -> Agent[_I, _O, Crashed]: ...
def lift(fn: Callable[[Any], Any], /) -> Agent[Any, Any, Crashed]:
    """Make a leaf from ``async def fn(x) -> Out`` that may raise, run on asyncio.

    Like :func:`combinators.lift`: an ``Exception`` becomes
    ``Failure(Crashed(...))``.  Only async functions: a plain function has
    nothing to run on asyncio (use :func:`combinators.lift`).

    >>> import asyncio
    >>> from combinators import aio
    >>> async def parse(text: str) -> int:
    ...     await asyncio.sleep(0)
    ...     return int(text)
    >>> asyncio.run(aio.run(aio.lift(parse), "x")).failure().exception
    ValueError("invalid literal for int() with base 10: 'x'")
    """
    _lift(fn)  # the checks and messages of lift()
    if not _is_async_callable(fn):
        msg = f"aio.lift() expects an async function, got the sync function {fn!r}; use combinators.lift() for it"
        raise AgentTypeError(msg)
    return _lift(HostCall(fn))
