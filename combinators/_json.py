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
* Workflows: ``WorkflowResult`` is ``{name: output}``; ``WorkflowFailed`` is
  ``{"type": "WorkflowFailed", "first": name, "outcomes": {name: outcome}}``
  with each outcome tagged (``NodeSucceeded``, ``NodeFailed``,
  ``NodeSkipped``, ``NodeCancelled``).
* Values the library types as ``object`` or ``Any`` (a workflow node's
  output, an event's value) come back as their JSON form: an attrs
  instance as a dict, a tuple as a list.  The keys in ``NoMajority`` and
  ``NoBranch`` are hashable, so arrays in them come back as tuples.  An
  *error* of unknown type (``Result[T, Any]``, a bare ``AllFailed`` or
  ``WorkflowFailed``, an event's error) is rebuilt when it is one of the
  library's tagged error values or an exception, else its JSON form.
* :class:`~combinators.Event` becomes a flat dict (``kind`` as its string);
  its ``error`` and ``value`` fall back to ``repr`` where JSON cannot hold
  them, and the library's error values in ``error`` are rebuilt.

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
from collections.abc import Callable
from typing import Any, Final, Literal, Union, get_args, get_origin

import attrs
import cattrs
from cattrs.gen import make_dict_unstructure_fn
from returns.result import Failure, Result, Success

from ._control import NoBranch
from ._exceptions import AllFailed, Crashed, GaveUp, NoMajority, TimedOut
from ._fanout import Confident
from ._observe import Event, EventKind
from ._workflow import (
    NodeCancelled,
    NodeFailed,
    NodeOutcome,
    NodeSkipped,
    NodeSucceeded,
    WorkflowFailed,
    WorkflowResult,
)

__all__ = ["ForeignException", "converter", "error_message", "json_data", "type_name"]

#: Classes that carry a ``"type"`` tag in JSON, written by their attrs
#: fields plus the tag (``Crashed``, ``WorkflowFailed`` and ``NodeSucceeded``
#: are tagged too, by hooks of their own): the library's error values, and
#: a workflow's node outcomes, which share one list.
_TAGGED: Final[tuple[type[Any], ...]] = (
    TimedOut,
    AllFailed,
    NoMajority,
    GaveUp,
    NoBranch,
    NodeFailed,
    NodeSkipped,
    NodeCancelled,
)

#: Generic classes that a bare name (``AllFailed`` for ``AllFailed[E]``)
#: structures with ``Any`` for the parameter: contents as their JSON form.
_GENERIC: Final[tuple[type[Any], ...]] = (AllFailed, GaveUp, NodeSucceeded, NodeFailed, Confident)
#: Those of them whose parameter is an error type.
_OF_ERRORS: Final[tuple[type[Any], ...]] = (AllFailed, NodeFailed)


class _UnknownError:
    """Stands for an error type not known when structuring (``Any``, a bare
    generic): the library's tagged error values and exceptions are rebuilt,
    anything else stays its JSON form."""


class ForeignException(Exception):
    """An exception rebuilt from JSON whose class is not available here.

    ``type_name`` and ``module`` name the original class; ``args`` are
    the original arguments (or its message).

    >>> from combinators import Crashed
    >>> data = converter.unstructure(Crashed(ValueError("bad"), "parse"))
    >>> data["exception"], data["module"] = "GoneError", "elsewhere"  # a class this process lacks
    >>> exc = converter.structure(data, Crashed).exception
    >>> isinstance(exc, ForeignException), str(exc)
    (True, 'GoneError: bad')
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


def _is_class(cls: type[Any]) -> Callable[[Any], bool]:
    """A predicate for ``cls`` and its parametrisations (``AllFailed[str]``)."""

    def check(tp: Any) -> bool:
        origin: Any = get_origin(tp)
        return (tp if origin is None else origin) is cls

    return check


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
                error_type = _UnknownError if args[1] is Any else args[1]
                return Failure(conv.structure(value["failure"], error_type))
        msg = f'a Result is {{"success": ...}} or {{"failure": ...}}, got {value!r}'
        raise TypeError(msg)

    conv.register_unstructure_hook_func(
        lambda t: _is_result(t) or (isinstance(t, type) and issubclass(t, Result)), unstructure_result
    )
    conv.register_structure_hook_func(_is_result, structure_result)

    # -- values typed ``object``: their JSON form, as for ``Any`` -----------
    conv.register_structure_hook_func(lambda t: t is object, lambda value, _: value)

    # -- tagged classes --------------------------------------------------------
    for cls in _TAGGED:
        plain = make_dict_unstructure_fn(cls, conv)

        def tagged(value: Any, plain: Any = plain, name: str = cls.__name__) -> dict[str, Any]:
            out: dict[str, Any] = plain(value)
            out["type"] = name
            return out

        # By predicate, so ``unstructure_as=AllFailed[str]`` finds it too.
        conv.register_unstructure_hook_func(_is_class(cls), tagged)

    # A bare generic class (``AllFailed`` rather than ``AllFailed[E]``)
    # structures its contents as they are (errors: see _UnknownError).
    def structure_bare(value: Any, tp: Any) -> Any:
        param = _UnknownError if tp in _OF_ERRORS else Any
        return conv.structure(value, tp[(param,) * len(tp.__parameters__)])

    conv.register_structure_hook_func(lambda t: t in _GENERIC, structure_bare)
    conv.register_structure_hook(_UnknownError, lambda value, _: _structure_error(conv, value))

    def structure_no_majority(value: Any, _: Any) -> NoMajority:
        data = _expect_object(value, "NoMajority")
        pairs = conv.structure(data.get("candidates", []), list[tuple[object, int]])
        failures = conv.structure(data.get("failures", 0), int)
        # Candidates are hashable keys: a JSON array in one was a tuple.
        return NoMajority(tuple((_hashable(key), count) for key, count in pairs), failures)

    conv.register_structure_hook(NoMajority, structure_no_majority)

    def structure_no_branch(value: Any, _: Any) -> NoBranch:
        data = _expect_object(value, "NoBranch")
        # A switch key is hashable too.
        return NoBranch(_hashable(data.get("key")), conv.structure(data.get("path"), str))

    conv.register_structure_hook(NoBranch, structure_no_branch)

    # -- workflows ---------------------------------------------------------
    # Outputs typed ``object`` come back as their JSON form, so they are
    # written JSON-safe (a set as an array, an opaque object as its repr).
    def unstructure_workflow_result(value: WorkflowResult) -> dict[str, Any]:
        return {name: json_data(output, conv) for name, output in value.items}

    def unstructure_node_succeeded(value: NodeSucceeded[Any]) -> dict[str, Any]:
        return {"type": "NodeSucceeded", "value": json_data(value.value, conv)}

    conv.register_unstructure_hook_func(_is_class(NodeSucceeded), unstructure_node_succeeded)

    def structure_workflow_result(value: Any, _: Any) -> WorkflowResult:
        data = _expect_object(value, "WorkflowResult ({name: output})")
        return WorkflowResult(tuple(data.items()))

    def unstructure_workflow_failed(value: WorkflowFailed[Any]) -> dict[str, Any]:
        outcomes = {name: conv.unstructure(outcome) for name, outcome in value.items}
        return {"type": "WorkflowFailed", "first": value.first, "outcomes": outcomes}

    def structure_workflow_failed(value: Any, tp: Any) -> WorkflowFailed[Any]:
        data = _expect_object(value, "WorkflowFailed")
        (error_type,) = get_args(tp) or (_UnknownError,)
        if error_type is Any:
            error_type = _UnknownError
        outcome_type: Any = NodeOutcome  # a generic alias: NodeOutcome[E]
        first = conv.structure(data.get("first"), str)
        outcomes = _expect_object(data.get("outcomes"), "WorkflowFailed's outcomes")
        items: list[tuple[str, Any]] = []
        for name, outcome in outcomes.items():
            try:
                items.append((name, conv.structure(outcome, outcome_type[error_type])))
            except Exception as exc:
                msg = f"$.outcomes.{name}: {error_message(exc)}"
                raise TypeError(msg) from exc
        return WorkflowFailed(tuple(items), first)

    conv.register_unstructure_hook_func(lambda t: t is WorkflowResult, unstructure_workflow_result)
    conv.register_structure_hook_func(lambda t: t is WorkflowResult, structure_workflow_result)
    conv.register_unstructure_hook_func(_is_class(WorkflowFailed), unstructure_workflow_failed)
    conv.register_structure_hook_func(_is_class(WorkflowFailed), structure_workflow_failed)

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

    # -- events --------------------------------------------------------------
    def unstructure_event(event: Event) -> dict[str, Any]:
        return {
            "kind": event.kind.value,
            "path": event.path,
            "time": event.time,
            "node": event.node,
            "attempt": event.attempt,
            "error": json_data(event.error, conv),
            "value": json_data(event.value, conv),
        }

    def structure_event(value: Any, _: Any) -> Event:
        data = _expect_object(value, "Event")
        try:
            kind = EventKind(data.get("kind"))
        except ValueError as exc:
            msg = f"$.kind: not an event kind: {data.get('kind')!r}"
            raise TypeError(msg) from exc
        return Event(
            kind,
            conv.structure(data.get("path"), str),
            conv.structure(data.get("time"), float),
            conv.structure(data.get("node", ""), str),
            conv.structure(data.get("attempt", 1), int),
            _structure_error(conv, data.get("error")),
            data.get("value"),
        )

    conv.register_unstructure_hook(Event, unstructure_event)
    conv.register_structure_hook(Event, structure_event)
    return conv


def _expect_object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        msg = f"a {what} is a JSON object, got {value!r}"
        raise TypeError(msg)
    return value


def _hashable(value: object) -> object:
    """A JSON value made hashable again: arrays become tuples."""
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    return value


#: Tag -> type for errors held where only ``Any`` is known (an event's error).
_ERROR_TAGS: Final[dict[str, Any]] = {
    cls.__name__: cls for cls in (TimedOut, AllFailed, NoMajority, GaveUp, NoBranch, Crashed, WorkflowFailed)
}


def _structure_error(conv: cattrs.Converter, data: Any) -> Any:
    """An error value typed ``Any``: the library's tagged errors (and
    exceptions) are rebuilt, anything else stays its JSON form."""
    if isinstance(data, dict):
        tag = data.get("type")
        if tag == "exception":
            return _structure_exception(data)
        if isinstance(tag, str) and tag in _ERROR_TAGS:
            try:
                return conv.structure(data, _ERROR_TAGS[tag])
            except Exception:  # noqa: BLE001 - a user dict that only looks tagged
                return data
    return data


def json_data(value: object, conv: cattrs.Converter | None = None) -> Any:
    """``value`` unstructured with the converter, made JSON-safe.

    What JSON cannot hold becomes text rather than an error: a set becomes
    an array (sorted when it can be), a dict key that is not a string,
    number, bool or ``None`` becomes its ``repr``, and any other object
    (one with no hook, or whose hook fails) its ``repr``.  So a log line or
    the command line's output never fails on an odd value.

    >>> json_data({"ids": {3, 1, 2}, (1, 2): object})
    {'ids': [1, 2, 3], '(1, 2)': "<class 'object'>"}
    """
    return _json_data(value, converter if conv is None else conv)


def _json_data(value: object, conv: cattrs.Converter) -> Any:
    # Containers are walked here, so one odd key or item costs only itself.
    if value is None or type(value) in (str, int, float, bool):
        return value
    if type(value) in (list, tuple, set, frozenset, dict):
        if isinstance(value, dict):
            return {_json_key(k): _json_data(v, conv) for k, v in value.items()}
        assert isinstance(value, list | tuple | set | frozenset)
        items = [_json_data(v, conv) for v in value]
        return _sorted(items) if isinstance(value, set | frozenset) else items
    try:
        data = conv.unstructure(value)
    except Exception:  # noqa: BLE001 - anything we cannot unstructure is shown as text
        return repr(value)
    return _jsonable(data)


def _json_key(key: object) -> object:
    return key if key is None or isinstance(key, str | int | float | bool) else repr(key)


def _sorted(items: list[Any]) -> list[Any]:
    try:
        return sorted(items)
    except TypeError:
        return sorted(items, key=repr)


def _jsonable(data: Any) -> Any:
    if data is None or isinstance(data, str | int | float | bool):
        return data
    if isinstance(data, list | tuple):
        return [_jsonable(v) for v in data]
    if isinstance(data, set | frozenset):
        return _sorted([_jsonable(v) for v in data])
    if isinstance(data, dict):
        return {_json_key(k): _jsonable(v) for k, v in data.items()}
    return repr(data)


def type_name(tp: Any) -> str:
    """A short, readable name for a type: ``list[Order]``, ``int | None``.

    >>> type_name(list[dict[str, int]] | None)
    'list[dict[str, int]] | None'
    """
    if tp is type(None) or tp is None:
        return "None"
    if tp is Any:
        return "Any"
    origin, args = get_origin(tp), get_args(tp)
    if _is_union(tp):
        return " | ".join(type_name(a) for a in args)
    if origin is Literal:
        return f"Literal[{', '.join(repr(a) for a in args)}]"
    if origin is not None:
        base = type_name(origin)
        if not args:
            return base
        inner = ", ".join("..." if a is Ellipsis else type_name(a) for a in args)
        return f"{base}[{inner}]"
    name = getattr(tp, "__qualname__", None) or getattr(tp, "__name__", None)
    return name if isinstance(name, str) else str(tp).replace("typing.", "")


_type_name = type_name


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
