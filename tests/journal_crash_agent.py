"""A journaled 20-leaf fan-out run in a subprocess by the crash tests.

    python tests/journal_crash_agent.py JOURNAL RUN_ID LOG [--delay S] [--limit N] [--lease S]

``JOURNAL`` is ``sqlite:PATH`` or a ``postgresql://`` DSN.  Every leaf
appends ``start PID I`` to ``LOG`` when it begins and ``end PID I`` when its
(real-time) work is done, so the parent can count executions and kill the
process part-way.  On success the result is printed as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import trio

from combinators import Journal, each, lift, run

LEAVES = 20
HERE = Path(__file__)
EXPECTED = [i * i for i in range(LEAVES)]


def _log(path: str, line: str) -> None:
    with open(path, "a") as handle:
        handle.write(line + "\n")
        handle.flush()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("journal")
    parser.add_argument("run_id")
    parser.add_argument("log")
    parser.add_argument("--delay", type=float, default=0.1)
    parser.add_argument("--limit", type=int, default=4)
    parser.add_argument("--lease", type=float, default=30.0)
    args = parser.parse_args(argv)
    pid = os.getpid()
    delay: float = args.delay
    log: str = args.log

    async def work(i: int) -> int:
        _log(log, f"start {pid} {i}")
        await trio.sleep(delay)
        _log(log, f"end {pid} {i}")
        return i * i

    tree = each(lift(work)).limit(args.limit)
    journal: Journal
    if args.journal.startswith("sqlite:"):
        journal = Journal.sqlite(args.journal.removeprefix("sqlite:"))
    else:
        journal = Journal.postgres(args.journal, lease=args.lease, poll=0.05)
    result = trio.run(lambda: run(tree, list(range(LEAVES)), journal=journal, run_id=args.run_id))
    print(json.dumps(result.unwrap()))
    return 0


# --------------------------------------------------------------------------
# The scenario, driven from the tests


def spawn(journal_url: str, run_id: str, log: Path, *extra: str) -> subprocess.Popen[str]:
    """Start this module as a process on ``journal_url``/``run_id``."""
    return subprocess.Popen(
        [sys.executable, str(HERE), journal_url, run_id, str(log), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def events(log: Path) -> list[tuple[str, int, int]]:
    """``(what, pid, leaf)`` for every line of the log so far."""
    if not log.exists():
        return []
    out = []
    for line in log.read_text().splitlines():
        what, pid, leaf = line.split()
        out.append((what, int(pid), int(leaf)))
    return out


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Poll ``condition`` (real time: these are real processes)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def finish(proc: subprocess.Popen[str]) -> list[int]:
    """Wait for a run to finish and give its printed result."""
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    result: list[int] = json.loads(out)
    return result


def recorded_leaves(journal: Journal, run_id: str) -> list[int]:
    """The leaf indexes the journal holds as done (with repeats, if any)."""
    records = trio.run(journal.records, run_id)
    out = []
    for r in records:
        if r.done:
            match = re.search(r"\[(\d+)\]$", r.path)
            assert match is not None, r.path
            out.append(int(match.group(1)))
    return out


def crash_and_resume(journal_url: str, journal: Journal, run_id: str, log: Path, extra: Sequence[str] = ()) -> None:
    """Kill a run with SIGKILL part-way, resume it, then run it a third time."""
    first = spawn(journal_url, run_id, log, *extra)
    wait_for(lambda: sum(e[0] == "end" for e in events(log)) >= 8, "8 leaves to finish")
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert first.returncode == -signal.SIGKILL
    done = recorded_leaves(journal, run_id)
    assert len(done) == len(set(done))
    assert 0 < len(done) < LEAVES, done
    started_first = [e[2] for e in events(log) if e[0] == "start"]
    # Leaves the first run started but never recorded (in flight at the kill).
    in_flight = set(started_first) - set(done)

    second = spawn(journal_url, run_id, log, *extra)
    assert finish(second) == EXPECTED
    ran_second = [e[2] for e in events(log) if e[0] == "start" and e[1] == second.pid]
    assert sorted(ran_second) == sorted(set(range(LEAVES)) - set(done)), (ran_second, done)
    assert in_flight <= set(ran_second)
    assert sorted(recorded_leaves(journal, run_id)) == list(range(LEAVES))
    total = sum(e[0] == "start" for e in events(log))
    assert total == LEAVES + len(in_flight)

    third = spawn(journal_url, run_id, log, *extra)
    assert finish(third) == EXPECTED
    assert not [e for e in events(log) if e[1] == third.pid]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
