"""agent.cache(store): hits across runs and processes, TTL, single flight (docs/spend.md)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from returns.result import Failure, Result, Success

from combinators import (
    Budget,
    BuildError,
    Cache,
    EventKind,
    Recorder,
    Usage,
    agent,
    build_report,
    collect,
    each,
    pure,
    run,
    versioned,
)
from conftest_pg import pg_server


@attrs.frozen
class Refused:
    reason: str
    permanent: bool = True


@attrs.frozen
class Busy:
    reason: str


class Counter:
    """A leaf that counts its calls, sleeps ``delay`` and answers ``x * 2`` (or fails as told)."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[int] = []
        self.delay = delay
        self.cancelled = 0

    async def __call__(self, x: int) -> Result[int, Refused | Busy]:
        self.calls.append(x)
        try:
            await trio.sleep(self.delay)
        except trio.Cancelled:
            self.cancelled += 1
            raise
        if x < 0:
            return Failure(Refused("negative"))
        if x == 0:
            return Failure(Busy("zero"))
        return Success(x * 2)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_hit_runs_nothing_and_another_input_misses(autojump_clock: trio.testing.MockClock) -> None:
    body = Counter()
    store = Cache.memory()
    leaf = agent(body).named("double").cache(store)
    assert [await run(leaf, 2), await run(leaf, 2), await run(leaf, 3)] == [Success(4), Success(4), Success(6)]
    assert body.calls == [2, 3]


async def test_version_and_name_are_part_of_the_key(autojump_clock: trio.testing.MockClock) -> None:
    body = Counter()
    store = Cache.memory()
    v1 = versioned(agent(body).named("double"), "v1").cache(store)
    v2 = versioned(agent(body).named("double"), "v2").cache(store)
    renamed = versioned(agent(body).named("twice"), "v1").cache(store)
    for tree in (v1, v1, v2, v2, renamed):
        assert await run(tree, 5) == Success(10)
    assert body.calls == [5, 5, 5]


async def test_entries_expire_on_the_wall_clock(autojump_clock: trio.testing.MockClock) -> None:
    body, clock = Counter(), Clock()
    leaf = agent(body).cache(Cache.memory(clock=clock), ttl=60)
    await run(leaf, 1)
    clock.now += 59.9
    await run(leaf, 1)
    assert body.calls == [1]
    clock.now += 0.1
    await run(leaf, 1)
    assert body.calls == [1, 1]


async def test_permanent_failures_only_when_asked(autojump_clock: trio.testing.MockClock) -> None:
    body = Counter()
    plain = agent(body).named("a").cache(Cache.memory())
    keeping = agent(body).named("b").cache(Cache.memory(), failures=True)
    for _ in range(2):
        assert await run(plain, -1) == Failure(Refused("negative"))
        assert await run(keeping, -1) == Failure(Refused("negative"))
        assert await run(keeping, 0) == Failure(Busy("zero"))  # transient: never kept
    assert body.calls == [-1, -1, 0, -1, 0]


async def test_hits_reserve_and_charge_nothing(autojump_clock: trio.testing.MockClock) -> None:
    body = Counter()
    hold = Budget(Usage(cost=1.0))
    leaf = agent(body).named("llm").costs(Usage(cost=1.0)).cache(Cache.memory())
    assert await run(leaf, 1, budget=hold) == Success(2)
    assert hold.remaining == Usage(cost=0.0)
    rec = Recorder()
    assert await run(leaf, 1, budget=hold, observer=rec) == Success(2)  # a hit: the spent budget does not matter
    assert hold.spent == Usage(cost=1.0)
    assert [e.kind for e in rec.events] == [EventKind.STARTED, EventKind.CACHED, EventKind.SUCCEEDED]
    report = build_report(rec.events)
    assert report["llm"].cache_hits == 1 and report.usage is None


async def test_identical_calls_in_flight_run_once(autojump_clock: trio.testing.MockClock) -> None:
    body = Counter(delay=1)
    leaf = agent(body).cache(Cache.memory())
    out = await run(each(leaf), [7] * 1000)
    assert out == Success([14] * 1000) and body.calls == [7]
    # Across concurrent runs of one trio loop too.
    other = Counter(delay=1)
    shared = agent(other).cache(Cache.memory())
    results: list[Any] = []
    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(lambda: _append(results, run(shared, 3)))
    assert results == [Success(6)] * 5 and other.calls == [3]


async def _append(results: list[Any], coro: Any) -> None:
    results.append(await coro)


async def test_a_cancelled_waiter_or_leader_does_not_stop_a_call_others_wait_for(
    autojump_clock: trio.testing.MockClock,
) -> None:
    body = Counter(delay=2)
    leaf = agent(body).cache(Cache.memory())
    got: list[Any] = []
    async with trio.open_nursery() as nursery:

        async def leader() -> None:
            with trio.move_on_after(1):
                await run(leaf, 4)
            got.append(("leader out", trio.current_time()))

        async def waiter() -> None:
            got.append(await run(leaf, 4))

        async def quitter() -> None:
            with trio.move_on_after(0.5):
                await run(leaf, 4)

        nursery.start_soon(leader)
        await trio.sleep(0)
        nursery.start_soon(waiter)
        nursery.start_soon(quitter)
    # One call, finished for the waiter; the cancelled leader waited for it.
    assert body.calls == [4] and body.cancelled == 0
    assert sorted(map(repr, got)) == sorted(map(repr, [Success(8), ("leader out", 2.0)]))


async def test_a_leader_nobody_waits_for_stops_its_call(autojump_clock: trio.testing.MockClock) -> None:
    body = Counter(delay=5)
    leaf = agent(body).cache(Cache.memory())
    with trio.move_on_after(1):
        await run(leaf, 4)
    assert body.cancelled == 1 and trio.current_time() == 1
    # Nothing was stored: the next call runs again.
    body.delay = 0
    assert await run(leaf, 4) == Success(8) and body.calls == [4, 4]


async def test_values_that_would_not_come_back_are_refused() -> None:
    @agent
    async def keyed(x: int) -> Result[dict[int, str], str]:
        return Success({x: "a"})

    with pytest.raises(TypeError, match="would not come back"):
        await run(keyed.cache(Cache.memory()), 1)


async def test_a_plain_value_of_another_type_than_declared_is_refused_not_served() -> None:
    """Was: stored (plain JSON skipped the check), then every hit raised "expected str, got int 7"."""
    import json

    def field(text: str) -> str:
        value: str = json.loads(text)["n"]  # an int in fact: the JSON says 7
        return value

    cached = pure(field).named("field").cache(Cache.memory())
    for _ in range(2):  # refused when stored, each time: never a wrong hit
        with pytest.raises(TypeError, match="field"):
            await run(cached, '{"n": 7}')


async def test_a_leader_cancelled_while_the_store_answers_still_stops_its_call(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Was: the timeout landed during the SQLite read, and the call then ran its full 5 s."""
    body = Counter(delay=5)
    leaf = agent(body).cache(Cache.sqlite(str(tmp_path / "c.db"))).timeout(0.001)
    start = trio.current_time()
    result = await run(leaf, 4)
    assert isinstance(result, Failure)
    assert trio.current_time() - start < 1
    assert body.calls in ([], [4])


def _absolute(x: int) -> int:
    return abs(x)


def test_only_leaves_and_caches() -> None:
    a = pure(_absolute)
    with pytest.raises(BuildError, match="only a leaf"):
        (a >> a).cache(Cache.memory())
    with pytest.raises(BuildError, match="expected a Cache"):
        a.cache({})  # type: ignore[arg-type]
    with pytest.raises(BuildError, match="ttl must be"):
        a.cache(Cache.memory(), ttl=0)


async def test_sqlite_hits_in_a_fan_out(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    body = Counter()
    store = Cache.sqlite(str(tmp_path / "cache.db"))
    leaf = agent(body).cache(store)
    assert await run(collect(each(leaf)), list(range(1, 201))) == Success([Success(2 * i) for i in range(1, 201)])
    assert await run(each(leaf), list(range(1, 201))) == Success([2 * i for i in range(1, 201)])
    assert len(body.calls) == 200
    store.close()


PROGRAM = textwrap.dedent(
    """
    import sys, trio
    from returns.result import Result, Success
    from combinators import Cache, agent, each, run, versioned

    store_url, log, version = sys.argv[1], sys.argv[2], sys.argv[3]

    @agent
    async def expensive(x: int) -> Result[int, str]:
        with open(log, "a") as f:
            f.write(f"{x}\\n")
        return Success(x * x)

    store = Cache.postgres(store_url) if store_url.startswith("postgres") else Cache.sqlite(store_url)
    tree = each(versioned(expensive, version).cache(store))
    print(trio.run(run, tree, [1, 2, 3]).unwrap())
    """
)


def _run_program(store: str, log: Path, version: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM, store, str(log), version], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_second_process_calls_no_cached_leaf_on_sqlite(tmp_path: Path) -> None:
    db, log = str(tmp_path / "cache.db"), tmp_path / "calls"
    assert _run_program(db, log, "v1") == "[1, 4, 9]"
    assert _run_program(db, log, "v1") == "[1, 4, 9]"
    assert sorted(log.read_text().split()) == ["1", "2", "3"]
    _run_program(db, log, "v2")  # a changed version calls again
    assert len(log.read_text().split()) == 6


@pytest.fixture(scope="module")
def pg_dsn() -> Iterator[str]:
    with pg_server() as dsn:
        yield dsn


def test_a_second_process_calls_no_cached_leaf_on_postgres(pg_dsn: str, tmp_path: Path) -> None:
    log = tmp_path / "calls"
    version = f"v-{tmp_path.name}"
    assert _run_program(pg_dsn, log, version) == "[1, 4, 9]"
    assert _run_program(pg_dsn, log, version) == "[1, 4, 9]"
    assert sorted(log.read_text().split()) == ["1", "2", "3"]


class _Opaque:
    """A class cattrs cannot structure (not attrs, no hooks)."""

    def __init__(self, x: int) -> None:
        self.x = x


async def test_an_output_the_cache_cannot_store_is_refused_naming_the_leaf() -> None:
    from combinators import AgentTypeError

    @agent
    async def opaque(x: int) -> Result[_Opaque, str]:
        return Success(_Opaque(x))

    with pytest.raises(AgentTypeError, match=r"cache: the output of leaf 'opaque' .* cannot be stored"):
        await run(opaque.cache(Cache.memory()), 1)
