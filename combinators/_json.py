"""JSON for inputs, outputs, errors and reports: one cattrs ``converter``.

``converter.unstructure(x)`` gives plain JSON-ready data and
``converter.structure(data, T)`` rebuilds a ``T``; for every value this
module supports, ``structure(unstructure(x), T) == x``.  On top of cattrs'
defaults (attrs classes, dataclasses, enums, literals, lists, tuples,
dicts, ``Optional``):

* ``Result`` values: ``Success(v)`` is ``{"success": v}``, ``Failure(e)`` is
  ``{"failure": e}``; structure with ``Result[Out, Err]``.
* The library's error values carry a ``"type"`` tag (``"TimedOut"``,
  ``"AllFailed"``, ``"NoMajority"``, ``"GaveUp"``, ``"Crashed"``), so a union
  of error types structures without guessing.
* ``Crashed`` keeps its exception as type name, module, message and
  (JSON-friendly) arguments.  Structuring rebuilds the exception class only
  if its module is already imported (JSON never causes an import); else it
  becomes a :class:`ForeignException` that remembers the type's name.
* Primitives are strict: ``"5"`` is not an ``int`` and ``5`` is not a
  ``str`` (an ``int`` is accepted as a ``float``), so input that does not
  fit fails with a message naming the field.
* Unions are structured by trying each member in order (the tag or the
  JSON type decides first).

>>> from returns.result import Failure
>>> from combinators import TimedOut
>>> data = converter.unstructure(Failure(TimedOut("p/fetch", 2.0)))
>>> data
{'failure': {'path': 'p/fetch', 'seconds': 2.0, 'type': 'TimedOut'}}
>>> converter.structure(data, Result[int, TimedOut])
<Failure: TimedOut(path='p/fetch', seconds=2.0)>
"""

from __future__ import annotations

import builtins
import sys
import types
from typing import Any, Final, Union, get_args, get_origin

import attrs
import cattrs
from cattrs.gen import make_dict_unstructure_fn
from returns.result import Failure, Result, Success

from ._exceptions import AllFailed, Crashed, GaveUp, NoMajority, TimedOut

__all__ = ["ForeignException", "converter", "error_message"]

#: Error classes that carry a ``"type"`` tag in JSON.
_TAGGED: Final = (TimedOut, AllFailed, NoMajority, GaveUp)


class ForeignException(Exception):
    """An exception rebuilt from JSON whose class is not available here.

    ``type_name`` and ``module`` name the original class; ``args`` are
    the original arguments (or its message).
    """

    def __init__(self, type_name: str, module: str, *args: object) -> None:
        super().__init__(*args)
        self.type_name = type_name
        self.module = module

    def __str__(self) -> str:
        return f"{self.type_name}: {super().__str__()}"


def _json_scalar(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _unstructure_exception(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, ForeignException):
        type_name, module = exc.type_name, exc.module
        message = Exception.__str__(exc)
    else:
        type_name, module = type(exc).__qualname__, type(exc).__module__
        message = str(exc)
    out: dict[str, Any] = {"exception": type_name, "module": module, "message": message}
    if all(_json_scalar(a) for a in exc.args):
        out["args"] = list(exc.args)
    return out


def _find_exception_class(module: str, qualname: str) -> type[Exception] | None:
    mod = builtins if module == "builtins" else sys.modules.get(module)
    obj: Any = mod
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    if isinstance(obj, type) and issubclass(obj, Exception):
        return obj
    return None


def _structure_exception(data: dict[str, Any]) -> Exception:
    type_name = str(data.get("exception", "Exception"))
    module = str(data.get("module", "builtins"))
    args = tuple(data["args"]) if isinstance(data.get("args"), list) else (data.get("message", ""),)
    cls = _find_exception_class(module, type_name)
    if cls is not None and cls is not ForeignException:
        try:
            exc = cls(*args)
        except Exception:  # noqa: S110 - a class we cannot rebuild stays foreign
            pass
        else:
            if exc.args == args:
                return exc
    return ForeignException(type_name, module, *args)


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def _is_result(tp: Any) -> bool:
    return tp is Result or get_origin(tp) is Result


_STRICT: Final[dict[type[Any], tuple[type[Any], ...]]] = {
    str: (str,),
    int: (int,),
    float: (int, float),
    bool: (bool,),
}


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(detailed_validation=True)

    # -- strict primitives -------------------------------------------------
    def strict(tp: type[Any]) -> Any:
        accepted = _STRICT[tp]

        def structure(value: Any, _: Any) -> Any:
            if isinstance(value, bool) and tp is not bool:
                ok = False
            else:
                ok = isinstance(value, accepted)
            if not ok:
                msg = f"expected {tp.__name__}, got {type(value).__name__} {value!r}"
                raise TypeError(msg)
            return tp(value) if tp is float else value

        return structure

    for tp in _STRICT:
        conv.register_structure_hook(tp, strict(tp))

    # -- unions: tag or JSON type first, then each member in order ---------
    def structure_union(value: Any, tp: Any) -> Any:
        members = get_args(tp)
        if value is None:
            if type(None) in members:
                return None
        tag = value.get("type") if isinstance(value, dict) else None
        if isinstance(tag, str):
            for m in members:
                cls = get_origin(m) or m
                if getattr(cls, "__name__", None) == tag:
                    return conv.structure(value, m)
        for m in members:
            if m in _STRICT and type(value) is m:
                return value
        problems: list[str] = []
        for m in members:
            if m is type(None):
                continue
            try:
                return conv.structure(value, m)
            except Exception as exc:  # noqa: PERF203 - trying members in turn
                problems.append(f"{_type_name(m)}: {error_message(exc)}")
        msg = f"{value!r} fits none of {_type_name(tp)} ({'; '.join(problems)})"
        raise TypeError(msg)

    conv.register_structure_hook_func(_is_union, structure_union)

    # -- Result --------------------------------------------------------------
    def unstructure_result(value: Result[Any, Any]) -> dict[str, Any]:
        inner = value._inner_value
        key = "success" if isinstance(value, Success) else "failure"
        return {key: conv.unstructure(inner)}

    def structure_result(value: Any, tp: Any) -> Result[Any, Any]:
        args = get_args(tp) or (Any, Any)
        if isinstance(value, dict) and len(value) == 1:
            if "success" in value:
                return Success(conv.structure(value["success"], args[0]))
            if "failure" in value:
                return Failure(conv.structure(value["failure"], args[1]))
        msg = f'a Result is {{"success": ...}} or {{"failure": ...}}, got {value!r}'
        raise TypeError(msg)

    conv.register_unstructure_hook_func(
        lambda t: _is_result(t) or (isinstance(t, type) and issubclass(t, Result)), unstructure_result
    )
    conv.register_structure_hook_func(_is_result, structure_result)

    # -- error values ------------------------------------------------------
    for cls in _TAGGED:
        plain = make_dict_unstructure_fn(cls, conv)

        def tagged(value: Any, plain: Any = plain, name: str = cls.__name__) -> dict[str, Any]:
            out: dict[str, Any] = plain(value)
            out["type"] = name
            return out

        conv.register_unstructure_hook(cls, tagged)

    # A bare generic error class (``AllFailed`` rather than ``AllFailed[E]``)
    # structures its contents as they are.
    def structure_bare(value: Any, tp: Any) -> Any:
        return conv.structure(value, tp[Any])

    conv.register_structure_hook_func(lambda t: t is AllFailed or t is GaveUp, structure_bare)

    def unstructure_crashed(value: Crashed) -> dict[str, Any]:
        return {"type": "Crashed", "path": value.path, **_unstructure_exception(value.exception)}

    def structure_crashed(value: Any, _: Any) -> Crashed:
        if not isinstance(value, dict):
            msg = f"a Crashed is an object, got {value!r}"
            raise TypeError(msg)
        return Crashed(_structure_exception(value), str(value.get("path", "")))

    conv.register_unstructure_hook(Crashed, unstructure_crashed)
    conv.register_structure_hook(Crashed, structure_crashed)

    def unstructure_exception(value: BaseException) -> dict[str, Any]:
        return {"type": "exception", **_unstructure_exception(value)}

    conv.register_unstructure_hook_func(
        lambda t: isinstance(t, type) and issubclass(t, BaseException), unstructure_exception
    )
    conv.register_structure_hook_func(
        lambda t: isinstance(t, type) and issubclass(t, Exception),
        lambda value, _: _structure_exception(value),
    )
    return conv


def _type_name(tp: Any) -> str:
    if isinstance(tp, type) and not get_args(tp):
        return tp.__name__
    return str(tp).replace("typing.", "")


def error_message(exc: BaseException) -> str:
    """A one-line description of a structuring error, naming the field(s).

    >>> @attrs.frozen
    ... class Order:
    ...     symbol: str
    ...     qty: int
    >>> try:
    ...     converter.structure({"symbol": "AAPL", "qty": "x"}, Order)
    ... except Exception as exc:
    ...     print(error_message(exc))
    $.qty: expected int, got str 'x'
    """
    if isinstance(exc, cattrs.BaseValidationError):
        parts = []
        for line in cattrs.transform_error(exc, format_exception=_format_leaf):
            # cattrs writes "{message} @ {path}"; the path first reads better.
            message, sep, path = line.rpartition(" @ ")
            parts.append(f"{path}: {message}" if sep else line)
        return "; ".join(parts)
    return str(exc)


def _format_leaf(exc: BaseException, tp: type[Any] | None) -> str:
    if isinstance(exc, KeyError):
        return "required field missing"
    return str(exc)


converter: Final[cattrs.Converter] = _make_converter()
