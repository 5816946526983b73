"""Chrome / Perfetto trace-event JSON from the events of a run.

Each run of a node becomes one complete (``"ph": "X"``) event with its start
and duration in microseconds of trio time; a ``retried`` event becomes an
instant (``"ph": "i"``) event.  Open the file in https://ui.perfetto.dev or
``chrome://tracing``.

Trace viewers nest the complete events of one thread by time.  Parallel
branches overlap in time, so they cannot share a thread: every node run is
put on a *lane* (a ``tid``) where each event that encloses it is one of its
ancestors in the tree.  A node stays on its parent's lane when it can, so a
sequence reads as one lane and each extra parallel branch opens another
(or reuses a lane whose events have all ended).  Placing a run costs
O(log lanes), so a fan-out of many thousand runs is fine.

Viewers sort the events of a lane by start, *longest first* when starts
are equal, and nest an event in the one before it unless that one has
ended by then (an event ending at ``t`` does not enclose one starting at
``t``).  So a zero-length run and a longer run that start at the same
instant must not share a lane unless the longer one is an ancestor: the
viewer would draw the zero-length one inside it.  Such a run (a ``pure``
step before a slow sibling) gets a lane of its own.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs

from ._observe import TERMINAL, Event, EventKind

#: The process id used for every event (one run is one process).
PID = 1


@attrs.frozen
class Span:
    """One run of one node: from its ``started`` to its terminal event."""

    path: str
    kind: str
    start: float
    end: float
    status: str
    error: str | None = None
    attempt: int = 1
    #: What this run of a leaf charged (a ``Charge``), if it was metered.
    charge: Any = None


def spans(events: Iterable[Event]) -> list[Span]:
    """Pair each ``started`` with the terminal event of the same path.

    Runs of one path pair up first-in first-out.  A node with no terminal
    event (a run cut short) ends at the last event's time with status
    ``running``.
    """
    open_: dict[str, list[tuple[Event, int]]] = {}
    charged: dict[str, Any] = {}
    out: list[Span | None] = []
    last = 0.0
    for e in events:
        last = max(last, e.time)
        if e.kind is EventKind.CHARGED:
            charged[e.path] = e.value  # comes just before the run's terminal event
        elif e.kind is EventKind.STARTED:
            open_.setdefault(e.path, []).append((e, len(out)))
            out.append(None)
        elif e.kind in TERMINAL:
            pending = open_.get(e.path)
            if not pending:
                continue
            start, slot = pending.pop(0)
            error = None if e.error is None else repr(e.error)
            out[slot] = Span(
                e.path, start.node, start.time, e.time, e.kind.value, error, start.attempt, charged.pop(e.path, None)
            )
    for pending in open_.values():
        for start, slot in pending:
            out[slot] = Span(start.path, start.node, start.time, last, "running", None, start.attempt)
    return [s for s in out if s is not None]


def _is_ancestor(a: str, b: str) -> bool:
    return b.startswith(a + "/")


def _us(seconds: float) -> float:
    # Microseconds, rounded to the nanosecond so float noise does not break
    # the nesting of events that share an instant.
    return round(seconds * 1e6, 3)


def trace_events(events: Iterable[Event], *, name: str = "combinators run") -> dict[str, Any]:
    """The trace-event JSON object (``{"traceEvents": [...]}``) for a run.

    >>> from combinators import Recorder, pure, run_sync
    >>> rec = Recorder()
    >>> _ = run_sync(pure(abs).named("a"), -1, observer=rec)
    >>> [(e["ph"], e["name"]) for e in trace_events(rec.events)["traceEvents"]]
    [('M', 'process_name'), ('M', 'thread_name'), ('X', 'a')]
    """
    events = list(events)
    runs = spans(events)
    # Parents before children: by start, then by depth.
    order = sorted(range(len(runs)), key=lambda i: (runs[i].start, runs[i].path.count("/")))
    # lanes[t]: stack of (path, start, end) of the events open on lane t.
    lanes: list[list[tuple[str, float, float]]] = []
    lane_of: dict[str, int] = {}
    # (end of a lane's bottom event, lane): where to look for a free lane.
    free: list[tuple[float, int]] = []
    bottom_end: list[float] = []
    # instant[t]: the start of the last zero-length event placed on lane t.
    # Runs are placed in start order, so a longer run starting at that same
    # time (which would be drawn around it) must go elsewhere.
    instant: list[float | None] = []
    out: list[dict[str, Any]] = [
        {"ph": "M", "name": "process_name", "pid": PID, "tid": 0, "args": {"name": name}},
    ]
    placed: list[tuple[Span, int]] = []
    for i in order:
        run = runs[i]
        s, e = _us(run.start), _us(run.end)
        parent_lane = _nearest_lane(run.path, lane_of)
        lane: int | None = None
        if (
            parent_lane is not None
            and _fits(lanes[parent_lane], run.path, s, e)
            and not (e > s and instant[parent_lane] == s)
        ):
            lane = parent_lane
        else:
            # Else a lane whose events have all ended by s: its bottom event
            # (which encloses the rest) ended first.  Heap entries may be
            # stale; ``bottom_end`` has each lane's current bottom end.
            skipped: list[tuple[float, int]] = []
            while free and free[0][0] <= s:
                end, t = heapq.heappop(free)
                if bottom_end[t] != end:
                    continue
                if e > s and instant[t] == s:
                    skipped.append((end, t))  # free later, not for this run
                    continue
                lanes[t].clear()
                lane = t
                break
            for entry in skipped:
                heapq.heappush(free, entry)
        if lane is None:
            lanes.append([])
            bottom_end.append(e)
            instant.append(None)
            lane = len(lanes) - 1
        stack = lanes[lane]
        while stack and not _is_ancestor(stack[-1][0], run.path):
            stack.pop()
        stack.append((run.path, s, e))
        if len(stack) == 1:
            bottom_end[lane] = e
            heapq.heappush(free, (e, lane))
        if e == s:
            instant[lane] = s
        lane_of[run.path] = lane
        placed.append((run, lane))
    for t in range(len(lanes)):
        out.append({"ph": "M", "name": "thread_name", "pid": PID, "tid": t, "args": {"name": f"lane {t}"}})
    for run, lane in placed:
        args: dict[str, Any] = {"path": run.path, "status": run.status, "attempt": run.attempt}
        if run.error is not None:
            args["error"] = run.error
        if run.charge is not None:
            used = run.charge.used
            args["usage"] = {f: getattr(used, f) for f in used.set_fields()}
            if run.charge.overspent:
                args["overspent"] = list(run.charge.overspent)
        out.append(
            {
                "name": run.path.rsplit("/", 1)[-1],
                "cat": run.kind,
                "ph": "X",
                "ts": _us(run.start),
                "dur": max(0.0, round(_us(run.end) - _us(run.start), 3)),
                "pid": PID,
                "tid": lane,
                "args": args,
            }
        )
    for ev in events:
        if ev.kind is EventKind.RETRIED:
            out.append(
                {
                    "name": f"retry {ev.attempt}",
                    "cat": "retry",
                    "ph": "i",
                    "s": "t",
                    "ts": _us(ev.time),
                    "pid": PID,
                    "tid": lane_of.get(ev.path, 0),
                    "args": {"path": ev.path, "attempt": ev.attempt, "error": repr(ev.error)},
                }
            )
    return {"traceEvents": out, "displayTimeUnit": "ms"}


def _nearest_lane(path: str, lane_of: dict[str, int]) -> int | None:
    while "/" in path:
        path = path.rsplit("/", 1)[0]
        if path in lane_of:
            return lane_of[path]
    return None


def _fits(stack: list[tuple[str, float, float]], path: str, s: float, e: float) -> bool:
    """Can a run ``[s, e]`` of ``path`` go on a lane with these open events?

    Events that are not ancestors must have ended by ``s``; the innermost
    remaining (ancestor) event must enclose ``[s, e]``.
    """
    i = len(stack)
    while i and not _is_ancestor(stack[i - 1][0], path):
        if stack[i - 1][2] > s:
            return False
        i -= 1
    if i == 0:
        return True
    _, ps, pe = stack[i - 1]
    return ps <= s and e <= pe


def write_trace(events: Iterable[Event], file: str | Path) -> None:
    """Write the trace-event JSON of a run to ``file``.

    Open it in https://ui.perfetto.dev or ``chrome://tracing``.

    >>> import json, pathlib, tempfile
    >>> from combinators import Recorder, pure, run_sync
    >>> rec = Recorder()
    >>> _ = run_sync(pure(abs).named("abs"), -1, observer=rec)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = pathlib.Path(tmp, "run.json")
    ...     write_trace(rec.events, path)
    ...     names = [e["name"] for e in json.loads(path.read_text())["traceEvents"] if e["ph"] == "X"]
    >>> names
    ['abs']
    """
    Path(file).write_text(json.dumps(trace_events(events)), encoding="utf-8")
