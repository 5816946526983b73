"""Shared measuring helpers: medians of repetitions and a printed table."""

from __future__ import annotations

import gc
import statistics
import time
import tracemalloc
from collections.abc import Callable, Sequence

from combinators import Event, EventKind


def _seconds(fn: Callable[[], object]) -> float:
    """Wall time of one ``fn()``, starting from a collected heap."""
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_seconds(fn: Callable[[], object], *, repeat: int = 7) -> float:
    """Median wall time of ``fn()`` over ``repeat`` runs (after one warm-up)."""
    fn()
    return statistics.median(_seconds(fn) for _ in range(repeat))


def median_ratio(base: Callable[[], object], other: Callable[[], object], *, repeat: int = 7) -> float:
    """Median of ``time(other) / time(base)`` over ``repeat`` back-to-back pairs.

    Pairing the two runs and taking the median of the ratios keeps a slow
    stretch of a shared machine from landing on one side only.
    """
    base()
    other()
    return statistics.median(_seconds(other) / _seconds(base) for _ in range(repeat))


class Tally:
    """An observer that counts started and finished nodes, as a progress display does.

    It keeps nothing per event, so it measures the interpreter's cost of
    emitting events; ``Recorder`` columns add the cost of keeping every
    event alive (CPython's garbage collector then walks them all).
    """

    def __init__(self) -> None:
        self.started = 0
        self.finished = 0

    def __call__(self, event: Event) -> None:
        if event.kind is EventKind.STARTED:
            self.started += 1
        else:
            self.finished += 1


def peak_mib(fn: Callable[[], object]) -> float:
    """Peak traced Python memory of one ``fn()`` call, in MiB."""
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 2**20


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table, columns padded to fit."""
    cells = [list(map(str, header))] + [[f"{c:.2f}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(cells[0], widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells[1:]]
    return "\n".join(lines)
