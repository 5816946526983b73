"""Journal overhead per leaf for a 10,000-leaf fan-out (printed, not asserted).

    uv run python -m benchmarks.journal_overhead [--leaves N] [--pg DSN]

Runs ``each(lift(f))`` (``f`` async, one checkpoint) over N inputs with no journal, with an in-memory
journal, with SQLite (a fresh file: every leaf begun and committed, in
group-committed batches; then a resume that replays every leaf) and with
PostgreSQL when a DSN is given (``--pg`` or ``COMBINATORS_PG_DSN``).
Overhead per leaf = (time with journal - time without) / N.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from combinators import Journal, each, lift, run


async def _work(x: int) -> int:
    # One checkpoint, as any leaf that does I/O has: a leaf that never
    # yields would make the no-journal baseline unrealistically cheap.
    await trio.lowlevel.checkpoint()
    return x * 2 + 1


def _timed(fn: Callable[[], Awaitable[object]]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, all threads)."""

    async def main() -> tuple[float, float]:
        t0, c0 = time.perf_counter(), time.process_time()
        await fn()
        return time.perf_counter() - t0, time.process_time() - c0

    return trio.run(main)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--leaves", type=int, default=10_000)
    parser.add_argument("--pg", default=os.environ.get("COMBINATORS_PG_DSN"))
    args = parser.parse_args()
    n: int = args.leaves
    tree = each(lift(_work))
    inputs = list(range(n))

    base, base_cpu = min(_timed(lambda: run(tree, inputs)) for _ in range(3))
    print(
        f"{n} leaves, no journal: wall {base * 1e3:.1f} ms, CPU {base_cpu * 1e3:.1f} ms "
        f"({base / n * 1e6:.1f} us per leaf)"
    )
    print("overhead per leaf = (with journal - without) / leaves; wall clock and process CPU time")

    def report(label: str, timing: tuple[float, float]) -> None:
        wall, cpu = timing
        print(
            f"{label:34} wall {wall * 1e3:8.1f} ms  overhead {(wall - base) / n * 1e3:.4f} ms/leaf   "
            f"CPU overhead {(cpu - base_cpu) / n * 1e3:.4f} ms/leaf"
        )

    memory = Journal.memory()
    report("memory journal", _timed(lambda: run(tree, inputs, journal=memory, run_id="m")))

    with tempfile.TemporaryDirectory() as tmp:
        sqlite = Journal.sqlite(str(Path(tmp) / "journal.db"))
        report("sqlite, first run (commit all)", _timed(lambda: run(tree, inputs, journal=sqlite, run_id="s")))
        report("sqlite, resume (replay all)", _timed(lambda: run(tree, inputs, journal=sqlite, run_id="s")))

    if args.pg:
        pg = Journal.postgres(args.pg)
        run_id = uuid.uuid4().hex
        report("postgres, first run (commit all)", _timed(lambda: run(tree, inputs, journal=pg, run_id=run_id)))
        report("postgres, resume (replay all)", _timed(lambda: run(tree, inputs, journal=pg, run_id=run_id)))
    else:
        print("postgres: skipped (give --pg DSN or set COMBINATORS_PG_DSN)")


if __name__ == "__main__":
    main()
