"""A budget shared by several processes through a real PostgreSQL server (no mocks).

These tests run in real time: leases are on the database's clock.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from returns.result import Failure, Result, Success

from combinators import Budget, BuildError, OverBudget, Usage, agent, charge, run
from conftest_pg import pg_server

AGENT = Path(__file__).with_name("spend_pg_agent.py")


@pytest.fixture(scope="module")
def pg_dsn() -> Iterator[str]:
    with pg_server() as dsn:
        yield dsn


def _name() -> str:
    return f"budget-{uuid.uuid4().hex[:8]}"


def spawn(dsn: str, name: str, limit: float, leaves: int, log: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(AGENT), dsn, name, str(limit), str(leaves), str(log), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def lines(log: Path) -> list[str]:
    return log.read_text().split("\n")[:-1] if log.exists() else []


def test_three_processes_never_exceed_a_shared_budget(pg_dsn: str, tmp_path: Path) -> None:
    name, log = _name(), tmp_path / "log"
    procs = [spawn(pg_dsn, name, 10, 8, log, "--delay", "0.3") for _ in range(3)]
    counts = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        counts.append(tuple(int(v) for v in out.split()))
    # 24 calls of cost 1 against a limit of 10: exactly 10 ran, 14 were refused.
    assert sum(ok for ok, _ in counts) == 10
    assert sum(refused for _, refused in counts) == 14
    assert sum(line.startswith("start") for line in lines(log)) == 10
    # Never more than 10 in flight at once, across the processes.
    running = peak = 0
    for line in lines(log):
        running += 1 if line.startswith("start") else -1
        peak = max(peak, running)
    assert peak <= 10
    budget = Budget.postgres(pg_dsn, Usage(cost=10), name=name)
    assert budget.spent == Usage(cost=10.0) and budget.reserved == Usage(cost=0.0)
    budget.close()


def test_a_killed_process_reservation_is_released_after_its_lease(pg_dsn: str, tmp_path: Path) -> None:
    name, log = _name(), tmp_path / "log"
    victim = spawn(pg_dsn, name, 3, 3, log, "--hold", "--lease", "1")
    deadline = time.monotonic() + 60
    while sum(line.startswith("start") for line in lines(log)) < 3:
        assert time.monotonic() < deadline and victim.poll() is None, victim.stderr.read() if victim.stderr else ""
        time.sleep(0.05)
    budget = Budget.postgres(pg_dsn, Usage(cost=3), name=name, lease=1)
    assert budget.reserved == Usage(cost=3.0)  # held (and renewed) while the victim lives
    time.sleep(1.5)
    assert budget.reserved == Usage(cost=3.0), "a live process keeps its leases"
    victim.send_signal(signal.SIGKILL)
    victim.wait()

    @agent
    async def spend(x: int) -> Result[int, str]:
        charge(Usage(cost=1.0))
        return Success(x)

    priced = spend.costs(Usage(cost=1.0)).budget(budget)
    first = trio.run(run, priced, 1)
    assert isinstance(first, Failure) and isinstance(first.failure(), OverBudget)
    assert first.failure().reserved == Usage(cost=3.0)
    deadline = time.monotonic() + 30
    while budget.reserved != Usage(cost=0.0):
        assert time.monotonic() < deadline, "the killed process's reservations were never released"
        time.sleep(0.1)
    assert trio.run(run, priced, 1) == Success(1)
    assert budget.spent == Usage(cost=1.0)
    budget.close()


async def test_in_process_and_shared_budgets_together(pg_dsn: str) -> None:
    shared = Budget.postgres(pg_dsn, Usage(cost=2.0), name=_name())
    local = Budget(Usage(cost=5.0))

    @agent
    async def spend(x: int) -> Result[int, str]:
        return Success(x)

    tree = spend.costs(Usage(cost=1.0)).budget(shared).budget(local)
    results = [await run(tree, i) for i in range(3)]
    assert [type(r) for r in results] == [Success, Success, Failure]
    # The refused call gave back what it had taken in the local budget.
    assert local.spent == Usage(cost=2.0) and local.reserved == Usage(cost=0.0)
    shared.close()


def test_bad_lease_is_refused(pg_dsn: str) -> None:
    with pytest.raises(BuildError, match="lease must be > 0"):
        Budget.postgres(pg_dsn, Usage(cost=1.0), name="x", lease=0)
