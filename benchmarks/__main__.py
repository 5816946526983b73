"""Run every benchmark: ``uv run python -m benchmarks [NAME ...]``.

Each script runs in its own process (so one's memory does not colour the
next) and prints its own table.
"""

from __future__ import annotations

import subprocess
import sys

SCRIPTS = (
    "build",
    "chain",
    "each",
    "workflow_build",
    "workflow_run",
    "stream_memory",
    "journal_overhead",
    "executors",
    "aio",
)


def main() -> None:
    names = [a for a in sys.argv[1:] if not a.startswith("-")] or list(SCRIPTS)
    for name in names:
        print(f"\n=== benchmarks.{name} ===", flush=True)
        subprocess.run([sys.executable, "-m", f"benchmarks.{name}"], check=True)


if __name__ == "__main__":
    main()
