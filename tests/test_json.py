"""JSON via cattrs: outputs, Results, error values and reports round-trip."""

from __future__ import annotations

import json
from typing import Any, Literal

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from returns.result import Failure, Result, Success

from combinators import (
    AllFailed,
    Confident,
    Crashed,
    Event,
    EventKind,
    ForeignException,
    GaveUp,
    NoBranch,
    NodeCancelled,
    NodeFailed,
    NodeReport,
    NodeSkipped,
    NodeStatus,
    NodeSucceeded,
    NoMajority,
    Recorder,
    RemoteError,
    RunReport,
    TimedOut,
    Workflow,
    WorkflowFailed,
    WorkflowResult,
    converter,
    lift,
    pure,
    run,
)
from combinators._json import error_message, json_data, type_name
from combinators.testing import fake


@attrs.frozen
class Point:
    x: int
    y: str
    tags: tuple[str, ...] = ()


@attrs.frozen
class Order:
    symbol: str
    qty: int
    side: Literal["buy", "sell"]
    at: Point | None = None


class QuotaExceeded(Exception):
    """A custom exception: rebuilt from JSON because this module is imported."""


class NeedsKeyword(Exception):
    def __init__(self, *, code: int) -> None:
        super().__init__(f"code {code}")


def roundtrip(value: Any, tp: Any) -> Any:
    text = json.dumps(converter.unstructure(value, tp))
    return converter.structure(json.loads(text), tp)


texts = st.text(max_size=12)
floats = st.floats(allow_nan=False, allow_infinity=False)
points = st.builds(Point, st.integers(), texts, st.lists(texts, max_size=3).map(tuple))
orders = st.builds(Order, texts, st.integers(), st.sampled_from(["buy", "sell"]), st.none() | points)

#: (value, its type) pairs for outputs.
outputs: st.SearchStrategy[tuple[Any, Any]] = st.one_of(
    st.tuples(st.integers(), st.just(int)),
    st.tuples(texts, st.just(str)),
    st.tuples(floats, st.just(float)),
    st.tuples(st.booleans(), st.just(bool)),
    st.tuples(st.lists(st.integers(), max_size=5), st.just(list[int])),
    st.tuples(st.tuples(texts, st.integers()), st.just(tuple[str, int])),
    st.tuples(st.dictionaries(texts, floats, max_size=4), st.just(dict[str, float])),
    st.tuples(points, st.just(Point)),
    st.tuples(st.lists(orders, max_size=3), st.just(list[Order])),
    st.tuples(st.none() | st.integers(), st.just(int | None)),
    st.tuples(st.builds(Confident, floats, st.lists(floats, max_size=3).map(tuple), st.integers(0, 3)), st.just(Confident[float])),
)


@settings(max_examples=200)
@given(outputs)
def test_outputs_round_trip(pair: tuple[Any, Any]) -> None:
    value, tp = pair
    assert roundtrip(value, tp) == value


@settings(max_examples=200)
@given(outputs, st.booleans(), texts)
def test_results_round_trip(pair: tuple[Any, Any], ok: bool, error: str) -> None:
    value, tp = pair
    result: Result[Any, str] = Success(value) if ok else Failure(error)
    assert roundtrip(result, Result[tp, str]) == result  # type: ignore[valid-type]


exceptions = st.one_of(
    st.builds(ValueError, texts),
    st.builds(KeyError, texts),
    st.builds(QuotaExceeded, texts),
    st.builds(RuntimeError, texts, st.integers()),
    st.builds(ForeignException, st.sampled_from(["BotoError", "Glitch"]), st.just("somewhere.else"), texts),
    st.builds(RemoteError, texts, texts),
)
#: Values that are their own JSON form (what ``object``/``Any`` fields hold
#: after a round trip).
json_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | floats | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)
#: Hashable keys of a vote or a switch: scalars and (nested) tuples of them.
hashable_keys: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | floats | texts,
    lambda inner: st.lists(inner, max_size=3).map(tuple),
    max_leaves=6,
)
errors: st.SearchStrategy[Any] = st.one_of(
    st.builds(TimedOut, texts, floats),
    st.builds(AllFailed, st.lists(texts, max_size=3).map(tuple)),
    st.builds(NoMajority, st.lists(st.tuples(hashable_keys, st.integers(1, 5)), max_size=3).map(tuple), st.integers(0, 3)),
    st.builds(GaveUp, st.integers(), st.integers(0, 10)),
    st.builds(Crashed, exceptions, texts),
    st.builds(NoBranch, hashable_keys, texts),
)
ErrorType = TimedOut | AllFailed[str] | NoMajority | GaveUp[int] | Crashed | NoBranch


@settings(max_examples=300)
@given(errors)
def test_errors_round_trip_through_a_union(error: Any) -> None:
    assert roundtrip(error, ErrorType) == error
    assert roundtrip(error, type(error)) == error
    assert roundtrip(Failure(error), Result[int, ErrorType]) == Failure(error)


def test_crashed_keeps_type_message_and_path() -> None:
    data = converter.unstructure(Crashed(QuotaExceeded("slow down"), "p/fetch"))
    assert data == {
        "type": "Crashed",
        "path": "p/fetch",
        "exception": "QuotaExceeded",
        "module": __name__,
        "message": "slow down",
        "args": ["slow down"],
    }
    back = converter.structure(data, Crashed)
    assert type(back.exception) is QuotaExceeded and back.path == "p/fetch"


def test_exceptions_from_modules_not_imported_become_foreign() -> None:
    data = {"type": "Crashed", "path": "p", "exception": "Boom", "module": "not.imported.anywhere", "message": "m"}
    back = converter.structure(data, Crashed)
    assert isinstance(back.exception, ForeignException)
    assert (back.exception.type_name, back.exception.module, str(back.exception)) == (
        "Boom",
        "not.imported.anywhere",
        "Boom: m",
    )
    assert converter.unstructure(back)["exception"] == "Boom"


def test_an_exception_that_cannot_be_rebuilt_stays_foreign() -> None:
    crashed = Crashed(NeedsKeyword(code=3), "p")
    back = roundtrip(crashed, Crashed)
    assert isinstance(back.exception, ForeignException)
    assert back.exception.type_name == "NeedsKeyword" and back.exception.args == ("code 3",)


reports = st.builds(
    RunReport,
    st.lists(
        st.builds(
            NodeReport,
            texts,
            st.sampled_from(["leaf", "seq", "par"]),
            st.sampled_from(NodeStatus),
            st.integers(0, 5),
            floats,
            st.none() | floats,
            st.none() | texts,
            st.integers(0, 4),
        ),
        max_size=5,
    ).map(tuple),
    st.lists(texts, max_size=3).map(tuple),
)


@settings(max_examples=200)
@given(reports)
def test_reports_round_trip(report: RunReport) -> None:
    assert roundtrip(report, RunReport) == report


def test_input_that_does_not_fit_names_the_field() -> None:
    with pytest.raises(Exception) as info:
        converter.structure({"symbol": "AAPL", "qty": "ten", "side": "buy"}, Order)
    assert error_message(info.value) == "$.qty: expected int, got str 'ten'"
    with pytest.raises(Exception) as info:
        converter.structure({"symbol": "AAPL", "qty": 1, "side": "hold", "at": {"x": 1}}, Order)
    message = error_message(info.value)
    assert "$.side" in message and "$.at" in message
    with pytest.raises(Exception) as info:
        converter.structure({"qty": 1, "side": "buy"}, Order)
    assert error_message(info.value) == "$.symbol: required field missing"


def test_primitives_are_strict() -> None:
    for value, tp in [("5", int), (5, str), (True, int), (1.5, int), ("x", float)]:
        with pytest.raises(Exception):  # noqa: B017, PT011 - cattrs wraps the TypeError
            converter.structure(value, tp)
    assert converter.structure(5, float) == 5.0


def test_result_shape_is_checked() -> None:
    with pytest.raises(Exception, match="success"):
        converter.structure({"ok": 1}, Result[int, str])


# --------------------------------------------------------------------------
# Workflows, node outcomes and the other outputs


def _unique_names(draw_list: list[tuple[str, Any]]) -> tuple[tuple[str, Any], ...]:
    return tuple(dict(draw_list).items())


outcomes: st.SearchStrategy[Any] = st.one_of(
    st.builds(NodeSucceeded, json_values),
    st.builds(NodeFailed, errors),
    st.builds(NodeSkipped, texts),
    st.builds(NodeCancelled, st.booleans()),
)
workflow_results = st.lists(st.tuples(texts, json_values), max_size=4).map(_unique_names).map(WorkflowResult)


@st.composite
def workflow_faileds(draw: st.DrawFn) -> WorkflowFailed[Any]:
    items = draw(st.lists(st.tuples(texts, outcomes), max_size=4).map(_unique_names))
    first = draw(texts)
    failed = NodeFailed(draw(errors))
    return WorkflowFailed((*[(n, o) for n, o in items if n != first], (first, failed)), first)


@settings(max_examples=200)
@given(workflow_results, workflow_faileds())
def test_workflow_results_and_failures_round_trip(result: WorkflowResult, failed: WorkflowFailed[Any]) -> None:
    assert roundtrip(result, WorkflowResult) == result
    assert roundtrip(failed, WorkflowFailed[ErrorType]) == failed
    # Bare (errors of unknown type): the library's error values are rebuilt by their tag.
    assert roundtrip(failed, WorkflowFailed) == failed
    assert roundtrip(Failure(failed), Result[WorkflowResult, WorkflowFailed[ErrorType] | TimedOut]) == Failure(failed)
    assert roundtrip(Success(result), Result[WorkflowResult, WorkflowFailed[ErrorType]]) == Success(result)


def test_the_reviewers_workflow_failed_round_trips() -> None:
    failed = WorkflowFailed((("a", NodeSucceeded(1)), ("b", NodeFailed("bx"))), "b")
    data = converter.unstructure(failed)
    assert data == {
        "type": "WorkflowFailed",
        "first": "b",
        "outcomes": {"a": {"type": "NodeSucceeded", "value": 1}, "b": {"type": "NodeFailed", "error": "bx"}},
    }
    assert converter.structure(data, WorkflowFailed[str]) == failed
    assert converter.structure(converter.unstructure(WorkflowResult((("a", 1),))), WorkflowResult) == WorkflowResult(
        (("a", 1),)
    )


async def test_a_real_workflow_run_round_trips(autojump_clock: Any) -> None:
    wf, a = Workflow.start(int, errors=str).add("a", fake("a", delay=1, fn=lambda x: x + 1))
    wf, b = wf.add("b", fake("b", delay=2, error="bx"), after=a)
    wf, _ = wf.add("c", fake("c", fn=str), after=b)
    wf, _ = wf.add("d", fake("d", delay=1, fn=lambda x: [x, "d"]))
    failed = await run(wf.build(), 1)
    assert isinstance(failed, Failure)
    back = roundtrip(failed, Result[Any, WorkflowFailed[str]])
    assert back == failed
    assert back.failure().outcome("c") == NodeSkipped("b")

    wf, a = Workflow.start(int).add("a", fake("a", delay=1, fn=lambda x: x + 1))
    wf, _ = wf.add("b", fake("b", fn=lambda x: {"n": x}), after=a)
    ok = await run(wf.build(), 1)
    assert converter.unstructure(ok) == {"success": {"a": 2, "b": {"n": 2}}}
    assert roundtrip(ok, Result[WorkflowResult, WorkflowFailed[str]]) == ok


def test_values_typed_object_come_back_as_their_json_form() -> None:
    result = WorkflowResult((("pair", (1, 2)), ("point", Point(1, "a"))))
    back = roundtrip(result, WorkflowResult)
    assert back.as_dict() == {"pair": [1, 2], "point": {"x": 1, "y": "a", "tags": []}}
    failed = WorkflowFailed((("a", NodeSucceeded((1, 2))), ("b", NodeFailed(TimedOut("b", 1.0)))), "b")
    assert roundtrip(failed, WorkflowFailed[TimedOut]).outcome("a") == NodeSucceeded([1, 2])
    # Errors of unknown type (a bare WorkflowFailed, Result[T, Any]): the
    # library's error values are rebuilt, others are their JSON form.
    assert roundtrip(failed, WorkflowFailed).error == TimedOut("b", 1.0)
    other = WorkflowFailed((("b", NodeFailed(Point(1, "a"))),), "b")
    assert roundtrip(other, WorkflowFailed).error == {"x": 1, "y": "a", "tags": []}
    assert roundtrip(Failure(AllFailed((TimedOut("a", 1.0), "x"))), Result[int, Any]) == Failure(
        AllFailed((TimedOut("a", 1.0), "x"))
    )


def test_keys_of_votes_and_switches_come_back_hashable() -> None:
    no_majority = NoMajority(((("buy", 1), 2), ((("x", None), 2.5), 1), (None, 1)), 1)
    back = roundtrip(no_majority, NoMajority)
    assert back == no_majority
    assert {key for key, _ in back.candidates} == {("buy", 1), (("x", None), 2.5), None}  # hashable
    assert roundtrip(NoBranch(("a", 1), "p/switch"), NoBranch) == NoBranch(("a", 1), "p/switch")


def test_bare_generic_outputs_structure_as_json() -> None:
    assert roundtrip(Confident(0.5, (1, 2), 1), Confident[int]) == Confident(0.5, (1, 2), 1)
    assert converter.structure(converter.unstructure(Confident(0.5, ("a",))), Confident) == Confident(0.5, ("a",))
    assert converter.structure({"type": "NodeSucceeded", "value": [1]}, NodeSucceeded) == NodeSucceeded([1])
    assert converter.structure({"type": "NodeFailed", "error": "e"}, NodeFailed) == NodeFailed("e")


def test_a_bad_workflow_failed_names_the_node() -> None:
    data = {"type": "WorkflowFailed", "first": "b", "outcomes": {"b": {"type": "NodeFailed", "error": 5}}}
    with pytest.raises(TypeError, match=r"\$\.outcomes\.b"):
        converter.structure(data, WorkflowFailed[str])
    with pytest.raises(TypeError, match="JSON object"):
        converter.structure([], WorkflowResult)


def test_type_names_are_short_and_complete() -> None:
    assert type_name(list[Order]) == "list[Order]"
    assert type_name(dict[str, tuple[int, ...]] | None) == "dict[str, tuple[int, ...]] | None"
    assert type_name(Literal["buy", "sell"]) == "Literal['buy', 'sell']"
    assert type_name(Any) == "Any" and type_name(int) == "int"


# --------------------------------------------------------------------------
# Events


class Opaque:
    """A value no hook knows: shown by its repr."""

    def __repr__(self) -> str:
        return "<opaque>"


async def test_events_of_a_real_run_are_json(autojump_clock: Any) -> None:
    def explode(x: int) -> int:
        raise RuntimeError(f"bug on {x}")

    def crash(x: int) -> int:
        raise ValueError("lifted")

    tree = (
        fake("first", delay=1, fn=lambda x: {x, x + 1})  # a set: not JSON
        >> pure(lambda s: Opaque()).named("opaque")
        >> (
            fake("bad", delay=1, error=Point(1, "p"))
            | fake("slow", delay=3, value=1).timeout(0.5).named("slow_t").recover(lambda e: 0)
            | lift(crash).named("crash").recover(lambda e: 0)
            | fake("cancelled", delay=5, value=2)
        ).named("g").transform(lambda t: t)
    ).named("p")
    rec = Recorder()
    result = await run(tree.fallback(fake("backup", value=0)).named("top"), 1, observer=rec)
    assert result == Success(0)
    rec_bug = Recorder()
    with pytest.raises(RuntimeError):
        await run((fake("ok", delay=1, value=1) >> pure(explode).named("explode")).named("q"), 1, observer=rec_bug)
    events = rec.events + rec_bug.events
    text = json.dumps([converter.unstructure(e) for e in events])
    data = json.loads(text)
    kinds = {d["kind"] for d in data}
    assert kinds == {"started", "succeeded", "failed", "timed_out", "cancelled"}, [(d["path"], d["kind"]) for d in data]
    # Paths include the interpreter's steps (``g/recover[1]/crash``): find by name.
    by_name = {(d["path"].rsplit("/", 1)[-1], d["kind"]): d for d in data}
    assert by_name["first", "succeeded"]["value"] == [1, 2]
    assert by_name["opaque", "succeeded"]["value"] == "<opaque>"
    assert by_name["bad", "failed"]["error"] == {"x": 1, "y": "p", "tags": []}
    assert by_name["crash", "failed"]["error"]["type"] == "Crashed"
    assert by_name["slow_t", "timed_out"]["error"]["type"] == "TimedOut"
    assert by_name["cancelled", "cancelled"]["error"] is None
    assert by_name["explode", "failed"]["error"] == {
        "type": "exception",
        "exception": "RuntimeError",
        "module": "builtins",
        "message": "bug on 1",
        "args": ["bug on 1"],
    }
    # Structured back: kinds, times and library errors are rebuilt.
    back = [converter.structure(d, Event) for d in data]
    assert [(e.kind, e.path, e.time, e.node, e.attempt) for e in back] == [
        (e.kind, e.path, e.time, e.node, e.attempt) for e in events
    ]
    crash_event = next(e for e in back if e.path.endswith("/crash") and e.kind is EventKind.FAILED)
    assert isinstance(crash_event.error, Crashed) and str(crash_event.error.exception) == "lifted"
    timed_out = next(e for e in back if e.kind is EventKind.TIMED_OUT)
    assert timed_out.error == TimedOut(timed_out.path, 0.5)
    bug = next(e for e in back if e.path == "q/explode" and e.kind is EventKind.FAILED)
    assert type(bug.error) is RuntimeError and bug.error.args == ("bug on 1",)


async def test_a_timeout_event_is_json(autojump_clock: Any) -> None:
    rec = Recorder()
    await run(fake("slow", delay=3, value=1).timeout(2).named("t"), 1, observer=rec)
    data = [json.loads(json.dumps(converter.unstructure(e))) for e in rec.events]
    timed_out = [d for d in data if d["kind"] == "timed_out"]
    assert timed_out == [
        {
            "kind": "timed_out",
            "path": "t",
            "time": timed_out[0]["time"],
            "node": "timeout",
            "attempt": 1,
            "error": {"type": "TimedOut", "path": "t", "seconds": 2.0},
            "value": None,
        }
    ]
    assert converter.structure(timed_out[0], Event).error == TimedOut("t", 2.0)


events = st.builds(
    Event,
    st.sampled_from(EventKind),
    texts,
    floats,
    texts,
    st.integers(1, 5),
    st.none() | errors | json_values,
    st.none() | json_values,
)


@settings(max_examples=200)
@given(events)
def test_events_round_trip(event: Event) -> None:
    back = roundtrip(event, Event)
    if isinstance(event.error, dict) and isinstance(event.error.get("type"), str):
        return  # a plain dict that looks tagged may be read as the tagged type
    assert back == event


def test_json_data_never_fails() -> None:
    class NoRepr:
        pass

    data = json_data({"s": {3, 1}, "mixed": {1, "a"}, (1, 2): Opaque(), "t": (1, NoRepr)})
    json.dumps(data)
    assert data["s"] == [1, 3]
    assert sorted(map(str, data["mixed"])) == ["1", "a"]
    assert data["(1, 2)"] == "<opaque>"
    assert json_data(Opaque()) == "<opaque>"


def test_outputs_typed_object_are_written_json_safe() -> None:
    result = WorkflowResult((("ids", {2, 1}), ("thing", Opaque())))
    assert json.loads(json.dumps(converter.unstructure(result))) == {"ids": [1, 2], "thing": "<opaque>"}
    failed = WorkflowFailed((("a", NodeSucceeded(frozenset({"x"}))), ("b", NodeFailed("e"))), "b")
    data = json.loads(json.dumps(converter.unstructure(failed)))
    assert data["outcomes"]["a"] == {"type": "NodeSucceeded", "value": ["x"]}
