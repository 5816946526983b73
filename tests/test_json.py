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
    Crashed,
    ForeignException,
    GaveUp,
    NodeReport,
    NodeStatus,
    NoMajority,
    RunReport,
    TimedOut,
    converter,
)
from combinators._json import error_message


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
)
errors: st.SearchStrategy[Any] = st.one_of(
    st.builds(TimedOut, texts, floats),
    st.builds(AllFailed, st.lists(texts, max_size=3).map(tuple)),
    st.builds(NoMajority, st.lists(st.tuples(texts, st.integers(1, 5)), max_size=3).map(tuple), st.integers(0, 3)),
    st.builds(GaveUp, st.integers(), st.integers(0, 10)),
    st.builds(Crashed, exceptions, texts),
)
ErrorType = TimedOut | AllFailed[str] | NoMajority | GaveUp[int] | Crashed


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
