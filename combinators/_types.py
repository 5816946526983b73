"""Type variables and callable shapes shared by the whole package.

Names follow returns/trio: a trailing ``_co``/``_contra`` gives the variance;
plain names are invariant helpers for signatures.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Never, TypeAlias, TypeVar, TypeVarTuple

import typing_extensions
from returns.result import Result

_In_contra = TypeVar("_In_contra", contravariant=True)
_Out_co = TypeVar("_Out_co", covariant=True)
_Err_co = TypeVar("_Err_co", covariant=True)

_I = TypeVar("_I")
_O = TypeVar("_O")
_O2 = TypeVar("_O2")
_E = TypeVar("_E")
_E2 = TypeVar("_E2")
_T = TypeVar("_T")
_Ts = TypeVarTuple("_Ts")
#: ``OverBudget`` in a run's result when a ``budget=`` is given.  Without
#: one nothing solves it: mypy takes ``Never`` by itself, pyright needs the
#: default (PEP 696), else it would say ``Unknown``.
_OB = typing_extensions.TypeVar("_OB", default=Never)

#: The shape of the function behind an ``agent`` leaf.
AgentFn: TypeAlias = Callable[[_I], Awaitable[Result[_O, _E]]]

#: A compiled node: given its input and its own node path, it runs the
#: subtree and gives its outcome.  Internal to the interpreter.
Runner: TypeAlias = Callable[[Any, str], Awaitable[Result[Any, Any]]]
