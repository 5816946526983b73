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
    """The subtree at ``path`` did not finish within ``seconds`` of trio time."""

    path: str
    seconds: float


@attrs.frozen(eq=False)
class Crashed:
    """A ``lift`` function raised ``exception`` at node ``path``.

    Two ``Crashed`` are equal when their paths, exception types and messages
    are: exceptions themselves compare by identity, which is rarely useful.
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
    """Every operand of a ``first_success`` failed; errors in operand order."""

    errors: tuple[_E_co, ...]


@attrs.frozen
class NoMajority:
    """A ``vote`` where no value won a strict majority.

    ``candidates`` lists each distinct (key of a) success value with its count,
    most votes first; ``failures`` counts the operands that failed.
    """

    candidates: tuple[tuple[Any, int], ...]
    failures: int = 0


@attrs.frozen
class GaveUp(Generic[_S_co]):
    """A ``repeat`` ran ``rounds`` rounds without its condition holding."""

    last_state: _S_co
    rounds: int


class AgentTypeError(TypeError):
    """Something that is not an agent (or the wrong kind of function) was given."""


class BuildError(ValueError):
    """A tree or workflow was built with an argument it cannot run with."""


class CycleError(BuildError):
    """A workflow's dependencies form a cycle; ``cycle`` lists it in order."""

    def __init__(self, cycle: tuple[Hashable, ...]) -> None:
        self.cycle = cycle
        text = " -> ".join(str(n) for n in cycle)
        super().__init__(f"workflow has a dependency cycle: {text}")
