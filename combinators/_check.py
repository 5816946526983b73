"""Argument checks shared by every layer: one message per kind of misuse.

Each check takes the value, where it was given (``"fetch.timeout()"``) and
what it is, and gives the value back in the form the caller keeps, or
raises :class:`~combinators.BuildError` (``AgentTypeError`` for something
that is not callable) with a message naming the node and the fix.
"""

from __future__ import annotations

import inspect
import math
from datetime import timedelta

from ._exceptions import AgentTypeError, BuildError


def _check_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not name:
        msg = f"{what}: a node name must be a non-empty string, got {name!r}"
        raise BuildError(msg)
    if "/" in name:
        msg = f"{what}: node name {name!r} may not contain '/', which separates node paths"
        raise BuildError(msg)
    return name


def _show(value: object) -> str:
    """``repr(value)`` cut to a line for an error message; never fails (an int too long to print)."""
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - ValueError for ints past sys.get_int_max_str_digits
        if isinstance(value, int):
            return f"an int of {value.bit_length()} bits"
        return f"a {type(value).__name__}"
    return text if len(text) <= 60 else f"{text[:40]}... ({len(text)} characters)"


def _real(value: object, where: str, what: str, *, bound: str) -> float:
    """``value`` as a finite float, or a ``BuildError`` naming ``where`` and ``what``.

    ``bool`` is refused (``True`` is no count or duration), and so are ints
    too large for a float, ``inf`` and ``nan``; ``bound`` is the rest of the
    rule, for the message (``"> 0"``).
    """
    number: float | None = None
    if not isinstance(value, bool) and isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:
            number = None
    if number is None or not math.isfinite(number):
        msg = f"{where}: {what} must be a finite number {bound}, got {_show(value)}"
        raise BuildError(msg)
    return number


def _seconds(value: object, where: str, what: str) -> float:
    """``value`` as seconds of trio time: a finite number or a ``timedelta``, > 0.

    Refuses anything else (``True``, ``inf``, ``nan``, an int too large for
    a float) with a ``BuildError`` naming ``where``.
    """
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        msg = f"{where}: {what} must be a number of seconds or a timedelta > 0, got {_show(value)}"
        raise BuildError(msg)
    seconds = _real(value, where, what, bound="of seconds > 0")
    if not seconds > 0:
        msg = f"{where}: {what} must be a number of seconds or a timedelta > 0, got {_show(value)}"
        raise BuildError(msg)
    return seconds


def _count(value: object, where: str, what: str, *, minimum: int = 1, alternative: str = "") -> int:
    """``value`` as a whole number ``>= minimum``, or a ``BuildError`` (``bool`` refused).

    ``alternative`` names what else the argument may be, for the message.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        msg = f"{where}: {what} must be an int >= {minimum}, got {_show(value)}{alternative}"
        raise BuildError(msg)
    return value


def _require_callable(f: object, where: str) -> None:
    if not callable(f):
        msg = f"{where}: expected a function, got {type(f).__name__} {f!r}"
        raise AgentTypeError(msg)


def _fn_name(fn: object) -> str:
    name = getattr(fn, "__name__", None)
    if isinstance(name, str) and name and name != "<lambda>":
        return name.replace("/", "_")
    return type(fn).__name__ if not inspect.isfunction(fn) else "lambda"
