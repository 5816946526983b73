"""Error values that flow through trees, and errors for misuse of the library.

Two channels (STYLE.md, "Errors"):

* **Error values** are what agents fail with: they travel as ``Failure(e)``
  and are part of an agent's type.  The ones the library itself produces::

      TimedOut       .timeout() ran out of trio time
      Crashed        a lift() function raised; the exception is kept
      AllFailed      first_success(): every operand failed
      NoMajority     vote(): no strict majority
      GaveUp         repeat(): the bound was reached

* **Misuse** raises at build time (or at the start of a run) with the closest
  built-in exception::

      TypeError
       └── AgentTypeError      a non-callable, a sync function given to agent()
      ValueError
       └── BuildError          bad argument (limit(0), empty name, ...)
            └── CycleError     a workflow whose dependencies loop
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Generic, TypeVar

import attrs

_E_co = TypeVar("_E_co", covariant=True)
_S_co = TypeVar("_S_co", covariant=True)


@attrs.frozen
class TimedOut:
    """The subtree at ``path`` did not finish within ``seconds`` of trio time.

    >>> from combinators.testing import fake, run_virtual
    >>> result, _ = run_virtual(fake("slow", delay=9).timeout(1).named("ask"), None)
    >>> result.failure()
    TimedOut(path='ask', seconds=1.0)
    """

    path: str
    seconds: float


@attrs.frozen(eq=False)
class Crashed:
    """A ``lift`` function raised ``exception`` at node ``path``.

    Two ``Crashed`` are equal when their paths, exception types and messages
    are: exceptions themselves compare by identity, which is rarely useful.

    >>> from combinators import lift, run_sync
    >>> crashed = run_sync(lift(int).named("parse"), "x").failure()
    >>> crashed.path, type(crashed.exception).__name__
    ('parse', 'ValueError')
    >>> crashed == Crashed(ValueError("invalid literal for int() with base 10: 'x'"), "parse")
    True
    """

    exception: Exception
    path: str = ""

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Crashed):
            return NotImplemented
        return (
            self.path == other.path
            and type(self.exception) is type(other.exception)
            and self.exception.args == other.exception.args
        )

    def __hash__(self) -> int:
        return hash((self.path, type(self.exception).__name__, str(self.exception)))


@attrs.frozen
class AllFailed(Generic[_E_co]):
    """Every operand of a ``first_success`` failed; errors in operand order.

    >>> from combinators import fail, first_success, run_sync
    >>> run_sync(first_success(fail("a down"), fail("b down")), None)
    <Failure: AllFailed(errors=('a down', 'b down'))>
    """

    errors: tuple[_E_co, ...]


@attrs.frozen
class NoMajority:
    """A ``vote`` where no value won a strict majority.

    ``candidates`` lists each distinct (key of a) success value with its count,
    most votes first; ``failures`` counts the operands that failed.

    >>> from combinators import fail, succeed, run_sync, vote
    >>> run_sync(vote(succeed("yes"), succeed("no"), fail("?")), None).failure()
    NoMajority(candidates=(('yes', 1), ('no', 1)), failures=1)
    """

    candidates: tuple[tuple[Any, int], ...]
    failures: int = 0


@attrs.frozen
class GaveUp(Generic[_S_co]):
    """A ``repeat`` ran ``rounds`` rounds without its condition holding.

    >>> from combinators import pure, repeat, run_sync
    >>> run_sync(repeat(pure(lambda n: n + 1), until=lambda n: n > 100, max_times=3), 0)
    <Failure: GaveUp(last_state=3, rounds=3)>
    """

    last_state: _S_co
    rounds: int


class AgentTypeError(TypeError):
    """Something that is not an agent (or the wrong kind of function) was given.

    A ``TypeError``, raised when the tree is built.

    >>> from combinators import agent
    >>> try:
    ...     agent(len)
    ... except AgentTypeError as exc:
    ...     print(str(exc)[:40])
    agent() expects an `async def` returning
    """


class BuildError(ValueError):
    """A tree or workflow was built with an argument it cannot run with.

    A ``ValueError``, raised when the tree is built; the message names the
    node and the fix.

    >>> from combinators import pure
    >>> try:
    ...     pure(str).limit(0)
    ... except BuildError as exc:
    ...     print(type(exc).__name__, isinstance(exc, ValueError))
    BuildError True
    """


class CycleError(BuildError):
    """A workflow's dependencies form a cycle; ``cycle`` lists it in order.

    >>> from combinators import Workflow, pure
    >>> wf, a = Workflow.start(int).add("a", pure(str))
    >>> wf, b = wf.add("b", pure(len), after=a)
    >>> try:
    ...     wf.depend("a", on="b").build()
    ... except CycleError as exc:
    ...     print(exc.cycle)
    ('a', 'b', 'a')
    """

    def __init__(self, cycle: tuple[Hashable, ...]) -> None:
        self.cycle = cycle
        text = " -> ".join(str(n) for n in cycle)
        super().__init__(f"workflow has a dependency cycle: {text}")
