"""A process that spends from a PostgreSQL budget (tests/test_spend_postgres.py).

``python spend_pg_agent.py DSN NAME LIMIT LEAVES LOG [--lease S] [--delay S] [--hold]``
runs LEAVES leaf calls of cost 1 at once under the shared budget NAME
(limit LIMIT) and prints how many succeeded and were refused.  Each leaf
appends ``start PID`` / ``end PID`` to LOG.  ``--hold`` makes every leaf
sleep for ever (for the kill test).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import trio
from returns.result import Failure, Result, Success

from combinators import Budget, OverBudget, Usage, agent, charge, collect, each, run


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("dsn")
    p.add_argument("name")
    p.add_argument("limit", type=float)
    p.add_argument("leaves", type=int)
    p.add_argument("log", type=Path)
    p.add_argument("--lease", type=float, default=30.0)
    p.add_argument("--delay", type=float, default=0.2)
    p.add_argument("--hold", action="store_true")
    args = p.parse_args()
    pid = os.getpid()
    budget = Budget.postgres(args.dsn, Usage(cost=args.limit), name=args.name, lease=args.lease)

    def log(what: str) -> None:
        with args.log.open("a") as f:
            f.write(f"{what} {pid}\n")

    @agent
    async def spend(x: int) -> Result[int, str]:
        log("start")
        charge(Usage(cost=1.0))
        await trio.sleep(1e9 if args.hold else args.delay)
        log("end")
        return Success(x)

    tree = collect(each(spend.costs(Usage(cost=1.0)))).budget(budget)
    outcomes: Any = trio.run(run, tree, list(range(args.leaves))).unwrap()
    ok = sum(isinstance(r, Success) for r in outcomes)
    refused = sum(isinstance(r, Failure) and isinstance(r.failure(), OverBudget) for r in outcomes)
    print(ok, refused)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
