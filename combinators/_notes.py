"""How the interpreter labels a bug that escapes a run: one note, one message.

An exception from an ``agent``/``pure`` function, or from a function given
to a combinator, propagates as itself; these add the node path it came from
(once, however many nodes it passes on the way out).
"""

from __future__ import annotations

from ._check import _fn_name

_PREFIX = "combinators:"
_WHERE = f"{_PREFIX} raised"  # other notes (a remote traceback) do not count


def _add_once(exc: BaseException, text: str) -> None:
    if not any(n.startswith(_WHERE) for n in getattr(exc, "__notes__", ())):
        exc.add_note(text)


def note_node(exc: BaseException, path: str) -> None:
    """Note that ``exc`` was raised by the leaf at ``path``."""
    _add_once(exc, f"{_PREFIX} raised in node {path!r}")


def note_function(exc: BaseException, what: str, fn: object, path: str) -> None:
    """Note that ``exc`` was raised by the ``what`` function ``fn`` of node ``path``."""
    _add_once(exc, f"{_PREFIX} raised by the {what} function {_fn_name(fn)!r} of node {path!r}")


def not_a_result(name: str, path: str, value: object) -> TypeError:
    """The error for an ``agent`` function that returned something not a Result."""
    msg = (
        f"agent {name!r} at {path!r} returned {type(value).__name__} "
        f"{value!r}; an agent function must return Success(...) or Failure(...)"
    )
    return TypeError(msg)
