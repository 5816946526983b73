"""The durable journal (issue #9) on SQLite and in memory.

PostgreSQL has its own file (tests/test_journal_postgres.py); the crash
scenario both use lives in tests/journal_crash_agent.py.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from returns.result import Failure, Result, Success

from combinators import (
    Agent,
    AgentTypeError,
    BuildError,
    Journal,
    JournalMismatch,
    LeafContext,
    agent,
    current_leaf,
    each,
    lift,
    pure,
    run,
    versioned,
)
from combinators._journal_sqlite import _SqliteSession

HERE = Path(__file__).parent
AGENT = HERE / "journal_crash_agent.py"


@attrs.frozen
class Quote:
    symbol: str
    price: float
    tags: tuple[str, ...]


@attrs.frozen
class Refused:
    """A permanent error: the journal records it."""

    reason: str
    permanent: bool = True


@attrs.frozen
class Flaky:
    """A transient error: not recorded."""

    reason: str


def sqlite(tmp_path: Path) -> Journal:
    return Journal.sqlite(str(tmp_path / "journal.db"))


# --------------------------------------------------------------------------
# Replay


async def test_second_run_replays_every_leaf(tmp_path: Path) -> None:
    calls: list[str] = []

    def quote(symbol: str) -> Quote:
        calls.append(symbol)
        return Quote(symbol, 1.5, ("a", "b"))

    def describe(q: Quote) -> str:
        calls.append("describe")
        return f"{q.symbol}@{q.price}"

    def tags(q: Quote) -> tuple[str, ...]:
        return q.tags

    tree = pure(quote) >> (pure(describe) | pure(tags))
    journal = sqlite(tmp_path)
    first = await run(tree, "AAPL", journal=journal, run_id="r")
    assert first == Success(("AAPL@1.5", ("a", "b")))
    assert calls == ["AAPL", "describe"]
    second = await run(tree, "AAPL", journal=journal, run_id="r")
    assert second == first
    assert calls == ["AAPL", "describe"]  # nothing ran again
    records = await journal.records("r")
    assert [r.path for r in records] == ["seq/par/describe", "seq/par/tags", "seq/quote"]
    assert all(r.done and r.ok and r.attempts == 1 for r in records)


async def test_outputs_come_back_as_the_declared_type(tmp_path: Path) -> None:
    async def fetch(symbol: str) -> Result[tuple[Quote, int], str]:
        return Success((Quote(symbol, 2.0, ("x",)), 7))

    tree = agent(fetch)
    journal = sqlite(tmp_path)
    await run(tree, "MSFT", journal=journal, run_id="r")
    replayed = await run(tree, "MSFT", journal=journal, run_id="r")
    assert replayed == Success((Quote("MSFT", 2.0, ("x",)), 7))
    assert isinstance(replayed.unwrap()[0], Quote)


async def test_a_different_input_is_a_different_leaf_run(tmp_path: Path) -> None:
    seen: list[int] = []

    def square(x: int) -> int:
        seen.append(x)
        return x * x

    journal = sqlite(tmp_path)
    assert await run(pure(square), 3, journal=journal, run_id="r") == Success(9)
    assert await run(pure(square), 4, journal=journal, run_id="r") == Success(16)
    assert await run(pure(square), 3, journal=journal, run_id="r") == Success(9)
    assert seen == [3, 4]


async def test_a_leaf_is_committed_before_downstream_sees_it(tmp_path: Path) -> None:
    journal = sqlite(tmp_path)
    seen: list[list[str]] = []

    def first(x: int) -> int:
        return x + 1

    async def second(x: int) -> int:
        # Read the file through another connection: the commit is durable.
        seen.append([r.path for r in await journal.records("r") if r.done])
        return x * 2

    assert await run(pure(first) >> lift(second), 1, journal=journal, run_id="r") == Success(4)
    assert seen == [["seq/first"]]


async def test_fan_out_is_group_committed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    batches: list[int] = []
    execute = _SqliteSession._execute

    def counting(self: _SqliteSession, batch: list[Any]) -> None:
        batches.append(len(batch))
        execute(self, batch)

    monkeypatch.setattr(_SqliteSession, "_execute", counting)

    async def work(i: int) -> int:
        await trio.sleep(0)
        return i + 1

    result = await run(each(lift(work)), list(range(200)), journal=sqlite(tmp_path), run_id="r")
    assert result == Success([i + 1 for i in range(200)])
    assert sum(batches) == 400  # one begin and one finish per leaf
    assert len(batches) <= 20, batches  # ... in a handful of transactions


# --------------------------------------------------------------------------
# Failures


async def test_transient_failures_run_again_permanent_ones_are_replayed(tmp_path: Path) -> None:
    calls = Counter[str]()

    @agent
    async def flaky(x: int) -> Result[int, Flaky | Refused]:
        calls["flaky"] += 1
        return Failure(Flaky("busy"))

    @agent
    async def refuse(x: int) -> Result[int, Flaky | Refused]:
        calls["refuse"] += 1
        return Failure(Refused("no"))

    journal = sqlite(tmp_path)
    for _ in range(3):
        assert await run(flaky, 1, journal=journal, run_id="a") == Failure(Flaky("busy"))
        assert await run(refuse, 1, journal=journal, run_id="b") == Failure(Refused("no"))
    assert calls == {"flaky": 3, "refuse": 1}
    (record,) = await journal.records("b")
    assert record.done and record.ok is False


async def test_attempt_and_idempotency_key_across_retries_and_resumes(tmp_path: Path) -> None:
    seen: list[LeafContext] = []

    @agent
    async def charge(x: int) -> Result[int, Flaky]:
        ctx = current_leaf()
        assert ctx is not None
        seen.append(ctx)
        return Failure(Flaky("later")) if ctx.attempt < 4 else Success(x)

    journal = sqlite(tmp_path)
    tree = charge.retry(1)
    assert await run(tree, 5, journal=journal, run_id="pay") == Failure(Flaky("later"))
    assert await run(tree, 5, journal=journal, run_id="pay") == Success(5)
    assert await run(tree, 5, journal=journal, run_id="pay") == Success(5)
    assert [c.attempt for c in seen] == [1, 2, 3, 4]
    assert len({c.idempotency_key for c in seen}) == 1
    assert {(c.run_id, c.path) for c in seen} == {("pay", "charge.retry/charge")}
    assert current_leaf() is None


# --------------------------------------------------------------------------
# Refusals


def _plain(x: int) -> int:
    return x


def _other(x: tuple[int, int]) -> int:
    return x[0]


async def test_a_changed_tree_is_refused_naming_the_node(tmp_path: Path) -> None:
    journal = sqlite(tmp_path)
    base = pure(_plain).named("fetch") >> (pure(_plain).named("a") | pure(_plain).named("b"))
    await run(base, 1, journal=journal, run_id="r")

    renamed = pure(_plain).named("fetch") >> (pure(_plain).named("a") | pure(_plain).named("c"))
    with pytest.raises(JournalMismatch, match=r"node 'seq/par/c' was leaf 'b'.*and is now leaf 'c'") as info:
        await run(renamed, 1, journal=journal, run_id="r")
    assert info.value.path == "seq/par/c"

    bumped = versioned(pure(_plain), "v2").named("fetch") >> (pure(_plain).named("a") | pure(_plain).named("b"))
    with pytest.raises(JournalMismatch, match=r"node 'seq/fetch' was leaf 'fetch' and is now leaf 'fetch' version 'v2'"):
        await run(bumped, 1, journal=journal, run_id="r")

    grown = base >> pure(_other)
    with pytest.raises(JournalMismatch, match=r"node 'seq/seq' was leaf 'fetch' \(recorded at 'seq/fetch'\) and is now seq"):
        await run(grown, 1, journal=journal, run_id="r")

    # The recorded tree still resumes, and another run id starts afresh.
    assert await run(base, 1, journal=journal, run_id="r") == Success((1, 1))
    assert await run(renamed, 1, journal=journal, run_id="r2") == Success((1, 1))


class Opaque:
    def __init__(self, v: int) -> None:
        self.v = v


async def test_unencodable_output_is_refused_before_anything_runs(tmp_path: Path) -> None:
    ran: list[int] = []

    def first(x: int) -> int:
        ran.append(x)
        return x

    def make(x: int) -> Opaque:
        return Opaque(x)

    tree = pure(first) >> (pure(first) | pure(make))
    with pytest.raises(AgentTypeError, match=r"output of leaf 'seq/par/make'.*cannot be stored"):
        await run(tree, 1, journal=sqlite(tmp_path), run_id="r")
    assert ran == []


def _twice(x):  # type: ignore[no-untyped-def]  # deliberately undeclared
    return (x, x)


async def test_undeclared_outputs_must_survive_json() -> None:
    journal = Journal.memory()
    assert await run(pure(lambda x: [x, {"k": x}]), 1, journal=journal, run_id="r") == Success([1, {"k": 1}])
    assert await run(pure(lambda x: [x, {"k": x}]), 1, journal=journal, run_id="r") == Success([1, {"k": 1}])
    with pytest.raises(TypeError, match=r"leaf '_twice' has no declared output type.*annotate"):
        await run(pure(_twice), 1, journal=journal, run_id="t")


def _pair_as_object(x: int) -> object:
    return (x, x)


async def test_outputs_typed_object_must_survive_json_too() -> None:
    """``object`` says as little as no annotation: a tuple would replay as a list."""
    with pytest.raises(TypeError, match=r"leaf '_pair_as_object' has no declared output type"):
        await run(pure(_pair_as_object), 1, journal=Journal.memory(), run_id="o")


async def test_a_bug_in_an_agent_propagates_as_itself(tmp_path: Path) -> None:
    def broken(x: int) -> int:
        raise KeyError(x)

    with pytest.raises(KeyError) as info:
        await run(pure(_plain) >> pure(broken), 1, journal=sqlite(tmp_path), run_id="r")
    assert "combinators: raised in node 'seq/broken'" in getattr(info.value, "__notes__", [])
    assert [r.path for r in await sqlite(tmp_path).records("r") if r.done] == ["seq/_plain"]


def test_journal_from_url() -> None:
    from combinators._journal import MemoryJournal
    from combinators._journal_postgres import PostgresJournal
    from combinators._journal_sqlite import SqliteJournal

    sq = Journal.from_url("sqlite:///tmp/x.db")
    assert isinstance(sq, SqliteJournal) and sq.path == "/tmp/x.db"
    assert isinstance(Journal.from_url("sqlite:runs.db"), SqliteJournal)
    assert isinstance(Journal.from_url("runs.db"), SqliteJournal)
    assert isinstance(Journal.from_url("memory:"), MemoryJournal)
    assert isinstance(Journal.from_url("postgresql://u@h/db"), PostgresJournal)
    with pytest.raises(BuildError, match="unknown journal URL"):
        Journal.from_url("redis://h")


async def test_run_id_and_journal_go_together(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="without a journal"):
        await run(pure(_plain), 1, run_id="r")
    with pytest.raises(BuildError, match="needs a run_id"):
        await run(pure(_plain), 1, journal=sqlite(tmp_path))
    with pytest.raises(AgentTypeError, match="versioned"):
        versioned(pure(_plain) >> pure(_plain), "v1")


async def test_unhashable_input_names_the_leaf(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"cannot hash the input of leaf '_plain'"):
        bad: Any = Opaque(1)
        await run(pure(_plain), bad, journal=Journal.memory(), run_id="r")


# --------------------------------------------------------------------------
# Crashes: a real process killed with SIGKILL


def test_sigkill_then_resume_on_sqlite(tmp_path: Path) -> None:
    from journal_crash_agent import crash_and_resume

    db = tmp_path / "journal.db"
    journal = Journal.sqlite(str(db))
    crash_and_resume(f"sqlite:{db}", journal, "crash", tmp_path / "log")


# --------------------------------------------------------------------------
# Property: random trees, random crash points, resume


@attrs.frozen
class Spec:
    """A random tree: ``("leaf", delay)``, ``("seq", [..])`` or ``("par", [..])``."""

    kind: str
    delay: int = 0
    kids: tuple[Spec, ...] = ()


def _specs() -> st.SearchStrategy[Spec]:
    leaf = st.integers(0, 3).map(lambda d: Spec("leaf", d))
    return st.recursive(
        leaf,
        lambda inner: st.builds(
            Spec, st.sampled_from(["seq", "par"]), st.just(0), st.lists(inner, min_size=1, max_size=4).map(tuple)
        ),
        max_leaves=12,
    )


def _flat(x: Any) -> int:
    if isinstance(x, tuple | list):
        return sum(_flat(v) for v in x)
    return int(x)


def _build(spec: Spec, starts: Counter[str], counter: list[int]) -> Agent[Any, Any, Any]:
    if spec.kind == "leaf":
        counter[0] += 1
        k = counter[0]
        delay = spec.delay

        async def leaf(x: Any) -> int:
            ctx = current_leaf()
            assert ctx is not None
            starts[ctx.path] += 1
            await trio.sleep(delay)
            return _flat(x) * 3 + k

        return lift(leaf).named(f"L{k}")
    kids = [_build(s, starts, counter) for s in spec.kids]
    out = kids[0]
    for kid in kids[1:]:
        out = (out >> kid) if spec.kind == "seq" else (out | kid)
    return out.named(f"{spec.kind}{counter[0]}") if len(kids) > 1 else out


def _reference(spec: Spec, x: Any, counter: list[int]) -> Any:
    if spec.kind == "leaf":
        counter[0] += 1
        return _flat(x) * 3 + counter[0]
    if spec.kind == "seq":
        for kid in spec.kids:
            x = _reference(kid, x, counter)
        return x
    return tuple(_reference(kid, x, counter) for kid in spec.kids) if len(spec.kids) > 1 else _reference(
        spec.kids[0], x, counter
    )


def _leaf_count(spec: Spec) -> int:
    return 1 if spec.kind == "leaf" else sum(_leaf_count(k) for k in spec.kids)


async def _crash_resume(spec: Spec, crash_at: float, journal: Journal) -> None:
    starts = Counter[str]()
    tree = _build(spec, starts, [0])
    expected = _reference(spec, 1, [0])
    t0 = trio.current_time()
    with trio.move_on_after(crash_at):
        await run(tree, 1, journal=journal, run_id="p")
    crashed = trio.current_time() - t0
    first = Counter(starts)
    recorded = {r.path for r in await journal.records("p") if r.done}
    starts.clear()
    assert await run(tree, 1, journal=journal, run_id="p") == Success(expected)
    second = Counter(starts)
    # Every leaf position runs exactly once across both runs, except the
    # ones in flight at the crash (started, not recorded), which run twice.
    in_flight = set(first) - recorded
    assert all(n == 1 for n in first.values())
    assert all(n == 1 for n in second.values())
    assert set(second) == (set(first) | set(second)) - recorded
    assert not (set(second) & recorded)
    assert len(recorded) + len(second) == _leaf_count(spec)
    assert sum(first.values()) + sum(second.values()) == _leaf_count(spec) + len(in_flight)
    assert crashed <= crash_at
    starts.clear()
    assert await run(tree, 1, journal=journal, run_id="p") == Success(expected)
    assert not starts  # a finished run executes nothing


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=_specs(), crash_at=st.integers(0, 12).map(lambda t: t / 2))
def test_property_crash_anywhere_then_resume_memory(spec: Spec, crash_at: float) -> None:
    trio.run(_crash_resume, spec, crash_at, Journal.memory(), clock=trio.testing.MockClock(autojump_threshold=0))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(spec=_specs(), crash_at=st.integers(0, 12).map(lambda t: t / 2))
def test_property_crash_anywhere_then_resume_sqlite(tmp_path: Path, spec: Spec, crash_at: float) -> None:
    db = tmp_path / f"p{len(list(tmp_path.iterdir()))}.db"
    journal = Journal.sqlite(str(db))
    trio.run(_crash_resume, spec, crash_at, journal, clock=trio.testing.MockClock(autojump_threshold=0))


async def test_journal_costs_no_virtual_time(autojump_clock: trio.testing.MockClock) -> None:
    spec = Spec("seq", kids=(Spec("leaf", 2), Spec("par", kids=(Spec("leaf", 3), Spec("leaf", 1)))))
    tree = _build(spec, Counter(), [0])
    t0 = trio.current_time()
    await run(tree, 1, journal=Journal.memory(), run_id="t")
    assert trio.current_time() - t0 == 5


# --------------------------------------------------------------------------
# The example


def test_example_runs(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "examples.durable_run", str(tmp_path / "j.db")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=HERE.parent,
    )
    assert "first run interrupted" in out.stdout and "resumed" in out.stdout
    assert re.search(r"third run: same result, leaves run on resume: 0", out.stdout), out.stdout


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
async def test_a_leaf_recorded_earlier_in_the_run_is_answered_from_the_journal(backend: str, tmp_path: Path) -> None:
    """A retry of an enclosing node does not run a recorded leaf again, on every backend."""
    starts: list[tuple[str, int]] = []
    fails = [True]

    @agent
    async def first(x: int) -> Result[int, str]:
        ctx = current_leaf()
        starts.append(("first", ctx.attempt if ctx else 0))
        return Success(x + 1)

    @agent
    async def second(x: int) -> Result[int, str]:
        ctx = current_leaf()
        starts.append(("second", ctx.attempt if ctx else 0))
        if fails.pop() if fails else False:
            return Failure("transient")
        return Success(x * 10)

    journal = Journal.memory() if backend == "memory" else sqlite(tmp_path)
    assert await run((first >> second).retry(2), 1, journal=journal, run_id="r") == Success(20)
    assert starts == [("first", 1), ("second", 1), ("second", 2)]


@attrs.define(eq=False)
class _Doc:
    text: str


async def test_outputs_compared_by_identity_are_still_recorded() -> None:
    """No == to check with: the converter restores the class, so it is recorded and replayed."""

    @agent
    async def write(x: int) -> Result[_Doc, str]:
        return Success(_Doc(f"doc {x}"))

    journal = Journal.memory()
    first = await run(write, 1, journal=journal, run_id="d")
    again = await run(write, 1, journal=journal, run_id="d")
    assert isinstance(first.unwrap(), _Doc) and isinstance(again.unwrap(), _Doc)
    assert again.unwrap().text == "doc 1"
