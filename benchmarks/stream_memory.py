"""Peak memory of ``stream`` over many trivial inputs, against a hand-written trio loop.

Run it with ``uv run python -m benchmarks.stream_memory [N] [MAX_CONCURRENCY]``
(defaults: 1,000,000 inputs at ``max_concurrency=1000``).  It prints the
process's peak resident set size (``VmHWM``, which never goes down)
before and after the stream, the growth, and the wall time.  The issue's
bar is a peak under 150 MB.  With ``--baseline`` it first runs the same
workload as a hand-written trio worker pool, for comparison.
"""

from __future__ import annotations

import resource
import sys
import time
from typing import Never

import attrs
import trio
from returns.result import Result, Success

from combinators import Agent, pure
from combinators._stream import stream

_MB = 1024.0  # ru_maxrss is in KiB on Linux


def peak_mb() -> float:
    """Peak resident set size of this process so far, in MiB.

    Read from ``VmHWM`` in ``/proc/self/status`` where there is one: unlike
    ``ru_maxrss`` it starts afresh at ``exec``, so a benchmark started from a
    big parent process (a test run) does not inherit the parent's peak.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / _MB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / _MB


@attrs.frozen
class Measurement:
    inputs: int
    max_concurrency: int
    received: int
    total: int
    peak_before_mb: float
    peak_after_mb: float
    seconds: float

    def describe(self) -> str:
        return (
            f"stream: {self.received:,} outcomes of {self.inputs:,} inputs at "
            f"max_concurrency={self.max_concurrency}: peak RSS {self.peak_after_mb:.1f} MiB "
            f"(+{self.peak_after_mb - self.peak_before_mb:.1f} MiB over the "
            f"{self.peak_before_mb:.1f} MiB before), {self.seconds:.1f} s"
        )


def _plus_one(x: int) -> int:
    return x + 1


def measure(inputs: int = 1_000_000, max_concurrency: int = 1000) -> Measurement:
    """Stream ``inputs`` trivial inputs through ``pure(x + 1)``; keep only a running sum."""
    increment: Agent[int, int, Never] = pure(_plus_one).named("increment")

    async def main() -> tuple[int, int]:
        received = total = 0
        async with stream(increment, range(inputs), max_concurrency=max_concurrency) as outcomes:
            async for _, result in outcomes:
                received += 1
                total += result.unwrap()
        return received, total

    before = peak_mb()
    start = time.perf_counter()
    received, total = trio.run(main)
    seconds = time.perf_counter() - start
    return Measurement(inputs, max_concurrency, received, total, before, peak_mb(), seconds)


def baseline(inputs: int = 1_000_000, max_concurrency: int = 1000) -> float:
    """The same workload as a hand-written trio worker pool; gives the wall time."""

    async def main() -> int:
        send, receive = trio.open_memory_channel[Result[int, object]](max_concurrency)
        source = iter(range(inputs))
        total = 0

        async def worker(out: trio.MemorySendChannel[Result[int, object]]) -> None:
            async with out:
                for x in source:
                    await out.send(Success(x + 1))

        async with trio.open_nursery() as nursery:
            for _ in range(max_concurrency):
                nursery.start_soon(worker, send.clone())
            send.close()
            async for result in receive:
                total += result.unwrap()
        return total

    start = time.perf_counter()
    trio.run(main)
    return time.perf_counter() - start


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    n = int(args[0]) if args else 1_000_000
    width = int(args[1]) if len(args) > 1 else 1000
    if "--baseline" in sys.argv:
        print(f"hand-written trio pool: {baseline(n, width):.1f} s")
    m = measure(n, width)
    assert m.received == n and m.total == n * (n + 1) // 2, m
    print(m.describe())
    print("under the 150 MB bar" if m.peak_after_mb < 150 else "OVER the 150 MB bar")
