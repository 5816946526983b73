"""The PostgreSQL journal against a real server (no mocks).

``.ci/services`` starts PostgreSQL 15 and exports ``COMBINATORS_PG_DSN``;
without it the ``pg_dsn`` fixture starts its own server from installed
binaries, or skips these tests saying why (tests/conftest_pg.py).
These tests run in real time: leases are on the database's clock.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
import trio
from returns.result import Failure, Result, Success

import conftest_pg
from combinators import (
    Crashed,
    Journal,
    JournalCorrupt,
    JournalMismatch,
    JournalWriteError,
    agent,
    collect,
    current_leaf,
    each,
    lift,
    pure,
    run,
)
from conftest_pg import pg_server
from journal_crash_agent import EXPECTED, LEAVES, crash_and_resume, events, finish, recorded_leaves, spawn, wait_for


@pytest.fixture(scope="module")
def pg_dsn() -> Iterator[str]:
    with pg_server() as dsn:
        yield dsn


def _id() -> str:
    return uuid.uuid4().hex


def _inc(x: int) -> int:
    return x + 1


async def test_replay_and_records(pg_dsn: str) -> None:
    calls: list[int] = []

    def square(x: int) -> int:
        calls.append(x)
        return x * x

    journal = Journal.postgres(pg_dsn)
    run_id = _id()
    tree = pure(_inc) >> (pure(square) | pure(_inc))
    assert await run(tree, 2, journal=journal, run_id=run_id) == Success((9, 4))
    assert await run(tree, 2, journal=journal, run_id=run_id) == Success((9, 4))
    assert calls == [3]
    records = await journal.records(run_id)
    assert [(r.path, r.done, r.ok, r.attempts) for r in records] == [
        ("seq/_inc", True, True, 1),
        ("seq/par/_inc", True, True, 1),
        ("seq/par/square", True, True, 1),
    ]
    renamed = pure(_inc) >> (pure(square).named("sq") | pure(_inc))
    with pytest.raises(JournalMismatch, match="node 'seq/par/sq'"):
        await run(renamed, 2, journal=journal, run_id=run_id)


async def test_a_renewed_lease_is_not_stolen(pg_dsn: str) -> None:
    """A leaf running for 4 leases keeps its claim; a second session waits for its record."""
    runs = Counter[str]()

    async def slow(x: int) -> int:
        ctx = current_leaf()
        assert ctx is not None
        runs[ctx.path] += 1
        await trio.sleep(2.0)
        return x * 10

    tree = lift(slow)
    run_id = _id()
    results: list[object] = []

    async def one(delay: float) -> None:
        await trio.sleep(delay)
        journal = Journal.postgres(pg_dsn, lease=0.5, poll=0.05)
        results.append(await run(tree, 4, journal=journal, run_id=run_id))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one, 0.0)
        nursery.start_soon(one, 0.3)
    assert results == [Success(40), Success(40)]
    assert runs == {"slow": 1}
    (record,) = await Journal.postgres(pg_dsn).records(run_id)
    assert record.attempts == 1


async def test_a_released_claim_is_taken_at_once(pg_dsn: str) -> None:
    """A cancelled leaf gives its lease back, so a resume does not wait for it to expire."""
    journal = Journal.postgres(pg_dsn, lease=60.0)
    run_id = _id()

    async def stuck(x: int) -> int:
        await trio.sleep(0 if (ctx := current_leaf()) is not None and ctx.attempt > 1 else 30)
        return x

    with trio.move_on_after(0.5):
        await run(lift(stuck), 1, journal=journal, run_id=run_id)
    with trio.fail_after(5):
        assert await run(lift(stuck), 1, journal=journal, run_id=run_id) == Success(1)


def test_sigkill_then_resume_on_postgres(pg_dsn: str, tmp_path: Path) -> None:
    crash_and_resume(pg_dsn, Journal.postgres(pg_dsn), _id(), tmp_path / "log", extra=("--lease", "1"))


def test_three_processes_share_one_run(pg_dsn: str, tmp_path: Path) -> None:
    run_id = _id()
    log = tmp_path / "log"
    extra = ("--lease", "1", "--delay", "0.3", "--limit", "3")
    procs = [spawn(pg_dsn, run_id, log, *extra) for _ in range(3)]
    pids = {p.pid for p in procs}

    def in_flight() -> dict[int, set[int]]:
        open_: dict[int, set[int]] = {pid: set() for pid in pids}
        for what, pid, leaf in events(log):
            (open_[pid].add if what == "start" else open_[pid].discard)(leaf)
        return open_

    # Kill a process while it holds a leaf, once some work is recorded.
    wait_for(
        lambda: sum(e[0] == "end" for e in events(log)) >= 4 and any(in_flight().values()),
        "a process running a leaf",
    )
    # Freeze a process that has a leaf in flight, check it still holds one
    # (it may have finished it meanwhile on a loaded machine), then kill it.
    deadline = time.monotonic() + 30
    while True:
        assert time.monotonic() < deadline, "no process was caught holding a leaf"
        flights = in_flight()
        victim = next((p for p in procs if flights[p.pid]), None)
        if victim is None:
            time.sleep(0.01)
            continue
        victim.send_signal(signal.SIGSTOP)
        held = in_flight()[victim.pid]
        if held:
            break
        victim.send_signal(signal.SIGCONT)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert held == in_flight()[victim.pid]

    survivors = [p for p in procs if p is not victim]
    for p in survivors:
        assert finish(p) == EXPECTED

    # None lost, none recorded twice.
    assert sorted(recorded_leaves(Journal.postgres(pg_dsn), run_id)) == list(range(LEAVES))
    starts = [(pid, leaf) for what, pid, leaf in events(log) if what == "start"]
    by_survivors = Counter(leaf for pid, leaf in starts if pid != victim.pid)
    assert all(n == 1 for n in by_survivors.values()), by_survivors
    by_victim = Counter(leaf for pid, leaf in starts if pid == victim.pid)
    assert all(n == 1 for n in by_victim.values()), by_victim
    # The victim's leaves in flight at the kill were taken over after their
    # leases expired (attempt 2 in the journal).
    assert held <= set(by_survivors)
    records = {int(r.path.rsplit("[", 1)[1].rstrip("]")): r for r in trio.run(Journal.postgres(pg_dsn).records, run_id)}
    assert all(records[leaf].attempts == 2 for leaf in held)
    # Every other leaf ran exactly once in all: executions = leaves + in flight.
    twice = set(by_survivors) & set(by_victim)
    assert held <= twice
    assert len(starts) == LEAVES + len(twice)


@attrs.frozen
class Banned:
    symbol: str
    permanent: bool = True


async def test_each_records_permanent_failures(pg_dsn: str) -> None:
    calls = Counter[str]()

    @agent
    async def check(symbol: str) -> Result[str, Banned]:
        calls[symbol] += 1
        return Failure(Banned(symbol)) if symbol == "TSLA" else Success(symbol.lower())

    journal = Journal.postgres(pg_dsn)
    run_id = _id()
    tree = collect(each(check))
    expected = Success([Success("aapl"), Failure(Banned("TSLA")), Success("msft")])
    for _ in range(2):
        assert await run(tree, ["AAPL", "TSLA", "MSFT"], journal=journal, run_id=run_id) == expected
    assert calls == {"AAPL": 1, "TSLA": 1, "MSFT": 1}
    records = await journal.records(run_id)
    assert [(r.path, r.ok) for r in records] == [
        ("collect/each/check[0]", True),
        ("collect/each/check[1]", False),
        ("collect/each/check[2]", True),
    ]


# --------------------------------------------------------------------------
# Hardening (issue 15)


def _is_go(x: str) -> int:
    return x == "go"


def _half(x: int) -> float:
    return x // 2


async def test_subtype_values_come_back_as_themselves(pg_dsn: str) -> None:
    fails = [True]

    @agent
    async def flaky(x: float) -> Result[float, str]:
        return Failure("transient") if fails and fails.pop() else Success(x)

    journal = Journal.postgres(pg_dsn)
    run_id = _id()
    tree = pure(_is_go) >> pure(_half) >> flaky
    assert await run(tree, "go", journal=journal, run_id=run_id) == Failure("transient")
    resumed = await run(tree, "go", journal=journal, run_id=run_id)
    assert resumed == Success(0) and type(resumed.unwrap()) is int
    bool_id = _id()
    fails[:] = [True]
    assert await run(pure(_is_go) >> flaky, "go", journal=journal, run_id=bool_id) == Failure("transient")
    again = await run(pure(_is_go) >> flaky, "go", journal=journal, run_id=bool_id)
    assert again == Success(True) and type(again.unwrap()) is bool


def _label(x: int) -> str:
    return "\ud800" if x == 3 else f"doc {x}"


async def test_one_unstorable_value_fails_only_its_own_leaf(pg_dsn: str) -> None:
    journal = Journal.postgres(pg_dsn)
    run_id = _id()
    got = (await run(collect(each(lift(_label))), list(range(10)), journal=journal, run_id=run_id)).unwrap()
    assert [o for i, o in enumerate(got) if i != 3] == [Success(f"doc {i}") for i in range(10) if i != 3]
    match got[3]:
        case Failure(Crashed(exception=TypeError() as exc, path="collect/each/_label[3]")):
            assert "leaf 'collect/each/_label[3]'" in str(exc)
        case other:
            pytest.fail(f"expected Crashed for the bad leaf, got {other!r}")
    records = await journal.records(run_id)
    assert sorted(r.path for r in records if r.done) == sorted(f"collect/each/_label[{i}]" for i in range(10) if i != 3)


def _doc(x: int) -> str:
    return f"doc {x}"


async def test_a_database_error_on_one_record_keeps_the_rest_of_its_batch(pg_dsn: str) -> None:
    import psycopg

    journal = Journal.postgres(pg_dsn)
    await run(pure(_inc), 0, journal=journal, run_id=_id())  # creates the tables
    run_id = _id()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            f"""
            CREATE OR REPLACE FUNCTION refuse_{run_id}() RETURNS trigger AS $$
            BEGIN
                IF NEW.run_id = '{run_id}' AND NEW.payload = '"doc 3"' THEN
                    RAISE EXCEPTION 'refused by a trigger';
                END IF;
                RETURN NEW;
            END $$ LANGUAGE plpgsql;
            CREATE TRIGGER refuse_{run_id} BEFORE UPDATE ON combinators_leaves
                FOR EACH ROW EXECUTE FUNCTION refuse_{run_id}();
            """
        )
    try:
        tree = collect(each(lift(_doc).named("_label")))
        with pytest.raises(JournalWriteError, match=r"cannot record leaf 'collect/each/_label\[3\]'.*trigger"):
            await run(tree, list(range(10)), journal=journal, run_id=run_id)
        records = await journal.records(run_id)
        assert sorted(r.path for r in records if r.done) == sorted(
            f"collect/each/_label[{i}]" for i in range(10) if i != 3
        )
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(f"DROP TRIGGER refuse_{run_id} ON combinators_leaves")
            conn.execute(f"DROP FUNCTION refuse_{run_id}()")


async def test_a_tampered_record_names_the_leaf_and_the_run(pg_dsn: str) -> None:
    import psycopg

    journal = Journal.postgres(pg_dsn)
    run_id = _id()
    assert await run(pure(_inc), 1, journal=journal, run_id=run_id) == Success(2)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("UPDATE combinators_leaves SET payload = '{oops' WHERE run_id = %s", (run_id,))
    with pytest.raises(JournalCorrupt, match=rf"journal run '{run_id}': the record of leaf '_inc'"):
        await run(pure(_inc), 1, journal=journal, run_id=run_id)


# -- the fixture never changes the system ------------------------------------


def test_the_fixture_uses_a_given_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMBINATORS_PG_DSN", "postgresql://u@h/db")
    assert conftest_pg.server_source() == ("dsn", ["postgresql://u@h/db"])
    with conftest_pg.pg_server() as dsn:
        assert dsn == "postgresql://u@h/db"


def test_without_a_server_the_tests_skip_and_nothing_is_installed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Was: apt-get install postgresql-15 and useradd postgres, run from the test suite."""
    commands: list[object] = []
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: commands.append(a))
    monkeypatch.delenv("COMBINATORS_PG_DSN", raising=False)
    monkeypatch.setattr(conftest_pg, "PG_BIN", tmp_path / "no-postgres")
    with pytest.raises(pytest.skip.Exception, match=r"not installed.*source \.ci/services"):
        with conftest_pg.pg_server():
            pass
    # Binaries but root and no postgres user: skip, never useradd.
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "initdb").touch()
    monkeypatch.setattr(conftest_pg, "PG_BIN", tmp_path / "bin")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(conftest_pg, "_user_exists", lambda name: False)
    with pytest.raises(pytest.skip.Exception, match=r"no `postgres` user"):
        with conftest_pg.pg_server():
            pass
    assert commands == []
    # A non-root user runs initdb itself.
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert conftest_pg.server_source() == ("binaries", [])
