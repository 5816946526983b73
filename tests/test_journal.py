"""The durable journal (issue #9) on SQLite and in memory.

PostgreSQL has its own file (tests/test_journal_postgres.py); the crash
scenario both use lives in tests/journal_crash_agent.py.
"""

from __future__ import annotations

import itertools
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
    Crashed,
    Journal,
    JournalCorrupt,
    JournalMismatch,
    JournalWriteError,
    LeafContext,
    Parallel,
    agent,
    collect,
    current_leaf,
    each,
    lift,
    pure,
    run,
    versioned,
)
from combinators._expr import Leaf, Then
from combinators._journal_sqlite import _SqliteSession
from combinators.testing import agent_trees

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
    # A chain is recorded flat, at its run paths: a step added at the end is new.
    with pytest.raises(JournalMismatch, match=r"node 'seq/_other' is new \(leaf '_other'\)"):
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
    from combinators._journal_store import MemoryJournal
    from combinators._journal_postgres import PostgresJournal
    from combinators._journal_sqlite import SqliteJournal

    sq = Journal.from_url("sqlite:///tmp/x.db")
    assert isinstance(sq, SqliteJournal) and sq.path == "/tmp/x.db"
    assert isinstance(Journal.from_url("sqlite:runs.db"), SqliteJournal)
    assert isinstance(Journal.from_url("runs.db"), SqliteJournal)
    assert isinstance(Journal.from_url("memory:"), MemoryJournal)
    assert isinstance(Journal.from_url("postgresql://u@h/db"), PostgresJournal)
    with pytest.raises(BuildError, match="unknown journal scheme 'redis'"):
        Journal.from_url("redis://h")


@pytest.mark.parametrize("url", ["sqllite:runs.db", "bogus:x", "sqlite3:runs.db", "file:runs.db"])
def test_an_unknown_scheme_is_refused_with_the_known_ones(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BuildError, match=r"unknown journal scheme .*known schemes: sqlite:PATH, postgresql://") as info:
        Journal.from_url(url)
    assert repr(url) in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_paths_with_a_colon_stay_paths() -> None:
    from combinators._journal_sqlite import SqliteJournal

    for url, path in [("./a:b.db", "./a:b.db"), ("runs/a:b.db", "runs/a:b.db"), ("sqlite:a:b.db", "a:b.db"),
                      ("C:\\runs.db", "C:\\runs.db")]:
        journal = Journal.from_url(url)
        assert isinstance(journal, SqliteJournal) and journal.path == path
    for url in ("memory:x", "postgresql:db"):
        with pytest.raises(BuildError, match="is not a journal URL"):
            Journal.from_url(url)


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


#: Per leaf path, how many times its function started in the run in progress.
STARTS: Counter[str] = Counter()


@attrs.frozen
class Mix:
    """A journaled leaf's function: sleep ``delay``, give ``3 * flat(x) + k``; counts its starts by path."""

    k: int
    delay: int

    async def __call__(self, x: Any) -> int:
        ctx = current_leaf()
        assert ctx is not None
        STARTS[ctx.path] += 1
        await trio.sleep(self.delay)
        return _flat(x) * 3 + self.k


_ks = itertools.count(1)


def _mix(delay: int) -> Agent[Any, int, Any]:
    k = next(_ks)
    return lift(Mix(k, delay)).named(f"L{k}")


#: Trees of ``>>`` and ``|`` groups of up to four, from the one tree strategy.
mixes = agent_trees(max_leaves=12, leaves=st.integers(0, 3).map(_mix), kinds=("then", "parallel"), max_width=4)


def _flat(x: Any) -> int:
    if isinstance(x, tuple | list):
        return sum(_flat(v) for v in x)
    return int(x)


def _reference(node: Agent[Any, Any, Any], x: Any) -> Any:
    """What ``node`` gives on ``x``, read from its nodes."""
    match node:
        case Leaf(fn=Mix(k=k)):
            return _flat(x) * 3 + k
        case Then(first=first, second=second):
            return _reference(second, _reference(first, x))
        case Parallel(operands=operands):
            return tuple(_reference(op, x) for op in operands)
    raise AssertionError(node)  # pragma: no cover


def _leaf_count(tree: Agent[Any, Any, Any]) -> int:
    return sum(1 for node in tree.walk() if isinstance(node, Leaf))


async def _crash_resume(tree: Agent[Any, Any, Any], crash_at: float, journal: Journal) -> None:
    STARTS.clear()
    expected = _reference(tree, 1)
    t0 = trio.current_time()
    with trio.move_on_after(crash_at):
        await run(tree, 1, journal=journal, run_id="p")
    crashed = trio.current_time() - t0
    first = Counter(STARTS)
    recorded = {r.path for r in await journal.records("p") if r.done}
    STARTS.clear()
    assert await run(tree, 1, journal=journal, run_id="p") == Success(expected)
    second = Counter(STARTS)
    # Every leaf position runs exactly once across both runs, except the
    # ones in flight at the crash (started, not recorded), which run twice.
    in_flight = set(first) - recorded
    assert all(n == 1 for n in first.values())
    assert all(n == 1 for n in second.values())
    assert set(second) == (set(first) | set(second)) - recorded
    assert not (set(second) & recorded)
    assert len(recorded) + len(second) == _leaf_count(tree)
    assert sum(first.values()) + sum(second.values()) == _leaf_count(tree) + len(in_flight)
    assert crashed <= crash_at
    STARTS.clear()
    assert await run(tree, 1, journal=journal, run_id="p") == Success(expected)
    assert not STARTS  # a finished run executes nothing


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=mixes, crash_at=st.integers(0, 12).map(lambda t: t / 2))
def test_property_crash_anywhere_then_resume_memory(tree: Agent[Any, Any, Any], crash_at: float) -> None:
    trio.run(_crash_resume, tree, crash_at, Journal.memory(), clock=trio.testing.MockClock(autojump_threshold=0))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(tree=mixes, crash_at=st.integers(0, 12).map(lambda t: t / 2))
def test_property_crash_anywhere_then_resume_sqlite(tmp_path: Path, tree: Agent[Any, Any, Any], crash_at: float) -> None:
    db = tmp_path / f"p{len(list(tmp_path.iterdir()))}.db"
    journal = Journal.sqlite(str(db))
    trio.run(_crash_resume, tree, crash_at, journal, clock=trio.testing.MockClock(autojump_threshold=0))


async def test_journal_costs_no_virtual_time(autojump_clock: trio.testing.MockClock) -> None:
    tree = _mix(2) >> (_mix(3) | _mix(1))
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


# --------------------------------------------------------------------------
# Hardening (issue 15)


LONG_CHAIN = """
import json, sys, time
from combinators import Journal, pure, run_sync
from combinators._journal import plan_tree

n, backend, nesting, where = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
inc = pure(lambda x: x + 1).named("inc")
tree = inc
for _ in range(n - 1):
    tree = tree >> inc if nesting == "left" else inc >> tree
journal = Journal.memory() if backend == "memory" else Journal.sqlite(where)
start = time.perf_counter()
result = run_sync(tree, 0, journal=journal, run_id="r")
seconds = time.perf_counter() - start
manifest, _ = plan_tree(tree, journal.converter)
paths = [node[0] for node in json.loads(manifest)["nodes"]]
print(json.dumps({
    "result": result.unwrap(),
    # VmHWM is this process's own peak: ru_maxrss would carry the peak of
    # the pytest process that forked it across exec (Linux keeps it).
    "rss_mb": next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024,
    "manifest": len(manifest),
    "longest_path": max(map(len, paths)),
    "paths": paths[:3],
    "seconds": seconds,
}))
"""


def _long_chain(n: int, backend: str, nesting: str, tmp_path: Path) -> dict[str, Any]:
    import json

    out = subprocess.run(
        [sys.executable, "-c", LONG_CHAIN, str(n), backend, nesting, str(tmp_path / f"{nesting}.db")],
        capture_output=True, text=True, timeout=900, check=False, cwd=HERE.parent,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    data: dict[str, Any] = json.loads(out.stdout)
    return data


@pytest.mark.parametrize("nesting", ["left", "right"])
def test_a_100k_chain_journaled_in_memory_is_linear(nesting: str, tmp_path: Path) -> None:
    """Was: the manifest held nested paths (seq/seq/seq/...): 1.2 GB at 10k steps, killed at 100k."""
    got = _long_chain(100_000, "memory", nesting, tmp_path)
    assert got["result"] == 100_000
    assert got["rss_mb"] < 600, got
    # One entry per step at its run path: a few dozen bytes each, short paths.
    assert got["manifest"] < 100_000 * 40, got
    assert got["longest_path"] <= len("seq/inc[99999]"), got
    assert got["paths"] == ["seq", "seq/inc[0]", "seq/inc[1]"]


@pytest.mark.parametrize("nesting", ["left", "right"])
def test_a_long_chain_journaled_in_sqlite_is_linear(nesting: str, tmp_path: Path) -> None:
    """SQLite commits (fsyncs) once per sequential step, so fewer steps; memory is what is checked."""
    got = _long_chain(10_000, "sqlite", nesting, tmp_path)
    assert got["result"] == 10_000
    assert got["rss_mb"] < 300, got
    assert got["manifest"] < 10_000 * 40 and got["longest_path"] <= len("seq/inc[9999]"), got


def test_the_manifest_uses_the_interpreters_paths_for_chains() -> None:
    from combinators._journal import plan_tree

    a, b, c = (pure(_plain).named(n) for n in "abc")
    paths: dict[str, list[str]] = {}
    for label, tree in {
        "left": (a >> b) >> c,
        "right": a >> (b >> c),
        "handler": a >> (b.recover(lambda e: 0) >> c),
        "fallback": (a >> b).fallback(c).transform(lambda x: x),
    }.items():
        manifest, _ = plan_tree(tree, Journal.memory().converter)
        import json

        paths[label] = [f"{p} {k}" for p, k, _, _ in json.loads(manifest)["nodes"]]
    assert paths["left"] == paths["right"] == ["seq seq", "seq/a leaf", "seq/b leaf", "seq/c leaf"]
    # A right operand holding a handler stays one nested step, as it runs.
    assert paths["handler"] == [
        "seq seq", "seq/a leaf", "seq/seq seq", "seq/seq/b leaf", "seq/seq recover", "seq/seq/c leaf",
    ]
    assert paths["fallback"] == [
        "seq.transform transform", "seq.transform/a leaf", "seq.transform/b leaf", "seq.transform fallback",
        "seq.transform/c leaf", "seq.transform transform",
    ]


async def test_run_paths_of_a_chain_match_its_records() -> None:
    journal = Journal.memory()
    a, b, c = (pure(_plain).named(n) for n in "abc")
    tree = a >> (b.recover(lambda e: 0) >> c)
    assert await run(tree, 1, journal=journal, run_id="r") == Success(1)
    assert [r.path for r in await journal.records("r")] == ["seq/a", "seq/seq/b", "seq/seq/c"]


def _is_go(x: str) -> int:
    return x == "go"  # a bool, which mypy accepts as an int


def _half(x: int) -> float:
    return x // 2  # an int, which mypy accepts as a float


def _halves(x: int) -> list[float]:
    return [x / 2, x // 2]  # the second is an int: inside a list it would come back a float


def _backends(tmp_path: Path) -> list[Journal]:
    return [Journal.memory(), sqlite(tmp_path)]


async def test_subtype_values_come_back_as_themselves(tmp_path: Path) -> None:
    """Was: the resume gave 2.0 for 2, or raised 'expected int, got bool True' on every attempt."""
    for journal in _backends(tmp_path):
        fails = [True]

        @agent
        async def flaky(x: object) -> Result[object, str]:
            return Failure("transient") if fails and fails.pop() else Success(x)

        cases: list[tuple[str, Agent[Any, object, str], object]] = [
            ("bool", pure(_is_go) >> flaky, "go"),
            ("int", pure(_half) >> flaky, 5),
            ("both", pure(_is_go) >> pure(_half) >> flaky, "go"),
        ]
        for run_id, tree, x in cases:
            fails[:] = [True]
            uninterrupted = await run(pure(_is_go) >> pure(_half), "go")
            assert uninterrupted == Success(0)
            first = await run(tree, x, journal=journal, run_id=run_id)
            assert first == Failure("transient")
            resumed = await run(tree, x, journal=journal, run_id=run_id)
            expected = {"bool": True, "int": 2, "both": 0}[run_id]
            assert resumed == Success(expected)
            assert type(resumed.unwrap()) is type(expected), (run_id, resumed)


async def test_a_value_that_would_not_come_back_exactly_is_refused_naming_the_leaf(tmp_path: Path) -> None:
    for journal in _backends(tmp_path):
        with pytest.raises(TypeError, match=r"the output of leaf '_halves' \(list \[2\.5, 2\]\) would not come back"):
            await run(pure(_halves), 5, journal=journal, run_id="p")
        # A lift leaf fails alone, with Crashed naming it (as for anything it raises).
        got = await run(lift(_halves), 5, journal=journal, run_id="l")
        match got:
            case Failure(Crashed(exception=TypeError() as exc, path="_halves")):
                assert "leaf '_halves'" in str(exc)
            case _:
                pytest.fail(f"expected a Crashed failure, got {got!r}")
        assert [r.done for r in await journal.records("l")] == [False]


def test_same_compares_types_all_the_way_down() -> None:
    from combinators._journal import same

    assert same([1, (2.0, "x")], [1, (2.0, "x")])
    assert same({"a": [float("nan")]}, {"a": [float("nan")]})
    assert same(Quote("A", 1.5, ("t",)), Quote("A", 1.5, ("t",)))
    assert same(Success([1]), Success([1]))
    assert same({1, 2}, {2, 1})
    for a, b in [
        (True, 1), (2, 2.0), ([1], [1.0]), ((True,), (1,)), ({"k": True}, {"k": 1}), ({1: "x"}, {True: "x"}),
        ({1}, {1.0}), (Quote("A", 1, ()), Quote("A", 1.0, ())), (Success(1), Success(True)),
        (Success(1), Failure(1)), ([1], (1,)), ([[1]], [[1], [2]]),
    ]:
        assert not same(a, b), (a, b)
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    assert same(deep, deep[:])


def _label(x: int) -> str:
    return "\ud800" if x == 3 else f"doc {x}"


async def test_one_unstorable_value_fails_only_its_own_leaf(tmp_path: Path) -> None:
    """Was: UnicodeEncodeError from the SQLite batch, no leaf named, 0 of 10 records kept."""
    for journal in _backends(tmp_path):
        got = await run(collect(each(lift(_label))), list(range(10)), journal=journal, run_id="u")
        outcomes = got.unwrap()
        assert [o for i, o in enumerate(outcomes) if i != 3] == [Success(f"doc {i}") for i in range(10) if i != 3]
        match outcomes[3]:
            case Failure(Crashed(exception=TypeError() as exc, path="collect/each/_label[3]")):
                assert "leaf 'collect/each/_label[3]'" in str(exc) and "surrogates not allowed" in str(exc)
            case other:
                pytest.fail(f"expected Crashed for the bad leaf, got {other!r}")
        records = await journal.records("u")
        assert sorted(r.path for r in records if r.done) == sorted(
            f"collect/each/_label[{i}]" for i in range(10) if i != 3
        )
        # The same refusal for a pure leaf, which raises (its errors are typed).
        with pytest.raises(TypeError, match=r"cannot store the output of leaf '_label'"):
            await run(pure(_label), 3, journal=journal, run_id="p")


def _doc(x: int) -> str:
    return f"doc {x}"


async def test_a_database_error_on_one_record_keeps_the_rest_of_its_batch(tmp_path: Path) -> None:
    import sqlite3

    journal = sqlite(tmp_path)
    await run(pure(_plain), 0, journal=journal, run_id="setup")  # creates the tables
    conn = sqlite3.connect(str(tmp_path / "journal.db"))
    conn.execute(
        "CREATE TRIGGER refuse BEFORE UPDATE OF payload ON combinators_leaves "
        "WHEN NEW.payload = '\"doc 3\"' BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END"
    )
    conn.commit()
    conn.close()
    with pytest.raises(JournalWriteError, match=r"run 'w': cannot record leaf 'collect/each/_label\[3\]'.*trigger") as info:
        await run(collect(each(lift(_doc).named("_label"))), list(range(10)), journal=journal, run_id="w")
    assert info.value.path == "collect/each/_label[3]"
    records = await journal.records("w")
    assert sorted(r.path for r in records if r.done) == sorted(f"collect/each/_label[{i}]" for i in range(10) if i != 3)


def _huge(x: int) -> int:
    return 10**5000


async def test_a_value_whose_repr_fails_is_refused_naming_the_leaf() -> None:
    """Was: ValueError from inside the journal's own message (repr of 10**5000)."""
    with pytest.raises(TypeError, match=r"cannot store the output of leaf '_huge' \(int <int of 16610 bits>\)"):
        await run(pure(_huge), 1, journal=Journal.memory(), run_id="h")

    class Loud:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    from combinators._journal import safe_repr

    assert safe_repr(Loud()).startswith("<Loud ")
    assert len(safe_repr("x" * 10_000)) <= 120
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    assert safe_repr(deep).startswith("[[[")


def _set_payload(db: Path, run_id: str, payload: str) -> None:
    import sqlite3

    conn = sqlite3.connect(str(db))
    conn.execute("UPDATE combinators_leaves SET payload = ? WHERE run_id = ?", (payload, run_id))
    conn.commit()
    conn.close()


@pytest.mark.parametrize("payload", ['{"bad', '"a string"', "1.5", "null", ""])
async def test_a_tampered_record_names_the_leaf_and_the_run(payload: str, tmp_path: Path) -> None:
    """Was: a raw JSONDecodeError (or TypeError) on every resume."""
    journal = sqlite(tmp_path)
    tree = pure(_plain) >> pure(_half)
    assert await run(tree, 4, journal=journal, run_id="t") == Success(2)
    _set_payload(tmp_path / "journal.db", "t", payload)
    with pytest.raises(JournalCorrupt, match=r"journal run 't': the record of leaf 'seq/_plain' cannot be read back") as info:
        await run(tree, 4, journal=journal, run_id="t")
    assert (info.value.run_id, info.value.path) == ("t", "seq/_plain")
    assert isinstance(info.value, ValueError)


async def test_a_tampered_permanent_error_names_the_leaf(tmp_path: Path) -> None:
    @agent
    async def refuse(x: int) -> Result[int, Refused]:
        return Failure(Refused("no"))

    journal = sqlite(tmp_path)
    assert await run(refuse, 1, journal=journal, run_id="e") == Failure(Refused("no"))
    _set_payload(tmp_path / "journal.db", "e", '["not", "an", "error"]')
    with pytest.raises(JournalCorrupt, match=r"leaf 'refuse'"):
        await run(refuse, 1, journal=journal, run_id="e")


def _set_manifest(db: Path, run_id: str, manifest: str) -> None:
    import sqlite3

    conn = sqlite3.connect(str(db))
    conn.execute("UPDATE combinators_runs SET manifest = ? WHERE run_id = ?", (manifest, run_id))
    conn.commit()
    conn.close()


async def test_manifests_are_compared_by_content(tmp_path: Path) -> None:
    """Was: IndexError for the same nodes with other JSON spacing."""
    import json

    journal = sqlite(tmp_path)
    tree = pure(_plain) >> pure(_half)
    assert await run(tree, 4, journal=journal, run_id="m") == Success(2)
    from combinators._journal import plan_tree

    manifest, _ = plan_tree(tree, journal.converter)
    _set_manifest(tmp_path / "journal.db", "m", json.dumps(json.loads(manifest), indent=2))
    assert await run(tree, 4, journal=journal, run_id="m") == Success(2)
    for stored, detail in [
        ("{not json", "not JSON"),
        ('{"format": 2, "nodes": [["seq"]]}', "nodes cannot be read"),
        ('{"format": 2}', "nodes cannot be read"),
        ("[1, 2]", "journal format None"),
        ('{"format": 1, "nodes": []}', "journal format 1 \\(this version writes 2\\)"),
    ]:
        _set_manifest(tmp_path / "journal.db", "m", stored)
        with pytest.raises(JournalMismatch, match=rf"journal run 'm' .*node 'seq' .*{detail}"):
            await run(tree, 4, journal=journal, run_id="m")


async def test_a_failing_database_is_not_retried_record_by_record_forever() -> None:
    """A batch that fails for every record stops being split after two alike failures."""
    from combinators._journal_store import Op, Batcher

    calls: list[int] = []

    def execute(batch: list[Op]) -> None:
        calls.append(len(batch))
        raise OSError("disk gone")

    batcher = Batcher(execute)
    ops = [Op("finish", (f"p{i}", "h")) for i in range(50)]
    await batcher._write(ops)
    assert calls == [50, 1, 1]
    assert all(isinstance(op.error, OSError) for op in ops)


def test_sqlite_commits_survive_a_killed_process_and_fsync_survives_power_loss(tmp_path: Path) -> None:
    """WAL + synchronous=NORMAL by default (a commit survives SIGKILL); fsync=True is FULL."""
    from combinators._journal_sqlite import SqliteJournal, _connect

    normal, full = 1, 2  # SQLite's codes for PRAGMA synchronous
    assert _connect(str(tmp_path / "a.db")).execute("PRAGMA synchronous").fetchone() == (normal,)
    assert _connect(str(tmp_path / "b.db"), True).execute("PRAGMA synchronous").fetchone() == (full,)
    durable = Journal.sqlite(str(tmp_path / "b.db"), fsync=True)
    assert isinstance(durable, SqliteJournal) and durable.fsync
    assert repr(Journal.sqlite("x.db", fsync=True)) == "Journal.sqlite('x.db', fsync=True)"
