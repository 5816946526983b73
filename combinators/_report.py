"""A run report built from the events of one run.

:func:`build_report` folds the events an observer received (a
:class:`~combinators.Recorder`'s list) into one :class:`NodeReport` per node
path: its final status, how often it ran, when it first started and last
ended, and its last error.  The report also names the *critical path*: the
nodes whose running time made up the run's total time.

The report is plain attrs data, so ``combinators.converter`` turns it into
JSON and back; :meth:`RunReport.table` renders it as text.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping

import attrs

from ._observe import Event, EventKind
from ._exceptions import Usage, sum_usage


class NodeStatus(enum.Enum):
    """How a node's last run ended (``running``: no terminal event seen).

    >>> from combinators import Recorder, build_report, fail, run_sync
    >>> rec = Recorder()
    >>> _ = run_sync(fail("no").named("f"), None, observer=rec)
    >>> build_report(rec.events)["f"].status
    <NodeStatus.FAILED: 'failed'>
    """

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    RUNNING = "running"


_STATUS = {
    EventKind.SUCCEEDED: NodeStatus.SUCCEEDED,
    EventKind.FAILED: NodeStatus.FAILED,
    EventKind.TIMED_OUT: NodeStatus.TIMED_OUT,
    EventKind.CANCELLED: NodeStatus.CANCELLED,
}


@attrs.frozen
class NodeReport:
    """What happened to the node at ``path`` during one run.

    ``attempts`` counts the node's runs (a node under ``.retry()`` runs once
    per attempt); ``retries`` counts the ``retried`` events of a retry node
    itself.  ``start`` is the first start and ``end`` the last end, in trio
    seconds; ``end`` is ``None`` while the node is still running.  ``error``
    is the ``repr`` of the error value of the node's last run (text, so any
    error fits JSON); ``None`` when that run succeeded or was cancelled.

    >>> from combinators import Backoff, Recorder, build_report
    >>> from combinators.testing import fake, run_virtual
    >>> rec = Recorder()
    >>> flaky = fake("flaky", delay=1, error="busy").retry(1, backoff=Backoff(base=2))
    >>> _ = run_virtual(flaky, None, observer=rec)
    >>> node = build_report(rec.events)["flaky.retry/flaky"]
    >>> node.attempts, node.start, node.end, node.error
    (2, 0.0, 4.0, "'busy'")
    """

    path: str
    kind: str
    status: NodeStatus
    attempts: int
    start: float
    end: float | None
    error: str | None = None
    retries: int = 0
    usage: Usage | None = None
    overspent: tuple[str, ...] = ()
    cache_hits: int = 0

    @property
    def duration(self) -> float | None:
        """``end - start`` in trio seconds (``None`` while running)."""
        return None if self.end is None else self.end - self.start

    @property
    def depth(self) -> int:
        """How many ``/`` separate this node from the root."""
        return self.path.count("/")


@attrs.frozen
class RunReport:
    """Per-node outcomes of one run.

    ``nodes`` lists parents before their children (depth first), siblings
    by start time; the first is the root, the agent given to ``run``.

    >>> from combinators import Recorder, build_report
    >>> from combinators.testing import fake, run_virtual
    >>> rec = Recorder()
    >>> _ = run_virtual((fake("a", delay=1) >> fake("b", delay=2)).named("ab"), None, observer=rec)
    >>> report = build_report(rec.events)
    >>> [n.path for n in report.nodes], report.duration, report.critical_path
    (['ab', 'ab/a', 'ab/b'], 3.0, ('ab/a', 'ab/b'))
    """

    nodes: tuple[NodeReport, ...]
    critical_path: tuple[str, ...] = ()
    #: What every leaf call of the run charged (``None``: nothing metered).
    usage: Usage | None = None

    @property
    def root(self) -> NodeReport | None:
        """The report of the agent given to ``run``."""
        return self.nodes[0] if self.nodes else None

    @property
    def duration(self) -> float | None:
        """The run's total trio time, from the root's start to its end."""
        root = self.root
        return None if root is None else root.duration

    def __getitem__(self, path: str) -> NodeReport:
        for node in self.nodes:
            if node.path == path:
                return node
        msg = f"no node with path {path!r} in this report"
        raise KeyError(msg)

    def table(self) -> str:
        """The report as a plain-text table; ``*`` marks the critical path.

        Times are seconds since the root started.
        """
        critical = set(self.critical_path)
        header = ("node", "kind", "status", "tries", "start", "end", "took", "error")
        rows: list[tuple[str, ...]] = []
        root_depth = self.root.depth if self.root is not None else 0
        t0 = self.root.start if self.root is not None else 0.0
        for n in self.nodes:
            mark = "*" if n.path in critical else " "
            name = n.path.rsplit("/", 1)[-1]
            indent = "  " * max(0, n.depth - root_depth)
            rows.append(
                (
                    f"{mark} {indent}{name}",
                    n.kind,
                    n.status.value,
                    str(n.attempts),
                    f"{n.start - t0:.3f}",
                    "-" if n.end is None else f"{n.end - t0:.3f}",
                    "-" if n.duration is None else f"{n.duration:.3f}",
                    _clip(n.error or "", 60),
                )
            )
        widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]
        lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
        lines.append("  ".join("-" * w for w in widths))
        for r in rows:
            lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        if self.duration is not None:
            lines.append(f"total {self.duration:.3f}s; * critical path: {' > '.join(self.critical_path)}")
        if self.usage is not None:
            lines.append(f"usage {_usage_text(self.usage)}")
            for n in self.nodes:
                if n.overspent:
                    lines.append(f"overspent: {n.path} charged more {', '.join(n.overspent)} than it declared")
        return "\n".join(lines)


def _usage_text(u: Usage) -> str:
    return ", ".join(f"{f}={getattr(u, f)}" for f in u.set_fields()) or "nothing"


def _clip(text: str, width: int) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


@attrs.define
class _Acc:
    path: str
    kind: str
    attempts: int = 0
    open: int = 0
    start: float = 0.0
    end: float | None = None
    status: NodeStatus = NodeStatus.RUNNING
    error: str | None = None
    retries: int = 0
    usage: Usage | None = None
    overspent: tuple[str, ...] = ()
    cache_hits: int = 0


def build_report(events: Iterable[Event]) -> RunReport:
    """Fold the events of one run into a :class:`RunReport`.

    >>> from combinators import Recorder, pure, run_sync
    >>> rec = Recorder()
    >>> _ = run_sync((pure(abs) >> pure(str)).named("p"), -3, observer=rec)
    >>> [(n.path, n.status.value) for n in build_report(rec.events).nodes]
    [('p', 'succeeded'), ('p/abs', 'succeeded'), ('p/str', 'succeeded')]
    """
    acc: dict[str, _Acc] = {}
    charges: list[tuple[str, Usage]] = []
    for event in events:
        a = acc.get(event.path)
        if a is None:
            a = acc[event.path] = _Acc(event.path, event.node, start=event.time)
        if event.kind is EventKind.CHARGED:
            charge = event.value
            charges.append((event.path, charge.used))
            a.overspent = tuple(sorted(set(a.overspent) | set(charge.overspent)))
            continue
        if event.kind is EventKind.CACHED:
            a.cache_hits += 1
            continue
        if event.kind is EventKind.STARTED:
            a.attempts += 1
            a.open += 1
            a.status = NodeStatus.RUNNING
            a.error = None
            if a.attempts == 1:
                a.start = event.time
        elif event.kind is EventKind.RETRIED:
            a.retries += 1
        else:
            a.open = max(0, a.open - 1)
            a.end = event.time if a.end is None else max(a.end, event.time)
            if a.open == 0:
                a.status = _STATUS[event.kind]
            if event.error is not None:
                a.error = repr(event.error)
    total = _add_usage(acc, charges)
    nodes = tuple(
        NodeReport(
            path=a.path,
            kind=a.kind,
            status=a.status,
            attempts=a.attempts,
            start=a.start,
            end=None if a.open else a.end,
            error=a.error if a.status is not NodeStatus.SUCCEEDED else None,
            retries=a.retries,
            usage=a.usage,
            overspent=a.overspent,
            cache_hits=a.cache_hits,
        )
        for a in _tree_order(acc)
    )
    return RunReport(nodes, critical_path(nodes), total)


def _add_usage(acc: dict[str, _Acc], charges: list[tuple[str, Usage]]) -> Usage | None:
    """Add each charge to its node and every ancestor in the report; the run's total.

    Each node's usage is added exactly and rounded once (``sum_usage``), so
    the total agrees with ``estimate`` to the last digit.
    """
    per_node: dict[str, list[Usage]] = {}
    for path, used in charges:
        p: str | None = path
        while p is not None:
            if p in acc:
                per_node.setdefault(p, []).append(used)
            p = p.rsplit("/", 1)[0] if "/" in p else None
    for p, used_here in per_node.items():
        acc[p].usage = sum_usage(used_here)
    return sum_usage(used for _, used in charges)


def _tree_order(acc: dict[str, _Acc]) -> list[_Acc]:
    """Parents before children, siblings by start time then path (deterministic
    even when trio starts same-instant siblings in random order)."""
    kids: dict[str | None, list[_Acc]] = {}
    for a in acc.values():
        parent = _parent(a.path, acc)
        kids.setdefault(parent, []).append(a)
    out: list[_Acc] = []
    stack = sorted(kids.get(None, []), key=lambda a: (a.start, a.path), reverse=True)
    while stack:
        a = stack.pop()
        out.append(a)
        stack.extend(sorted(kids.get(a.path, []), key=lambda k: (k.start, k.path), reverse=True))
    return out


def critical_path(nodes: tuple[NodeReport, ...]) -> tuple[str, ...]:
    """The innermost nodes whose times add up to the root's time, in time order.

    Walking back from the root's end: the child that ended last (but not
    after the parent) is on the path; before it, the child that ended last
    before that one started; and so on, descending into each child the same
    way.  A sequence puts all its steps on the path, a parallel group only
    its slowest operand.  Iterative, so deep trees are fine.

    Children that end at the same instant are ranked by how they ended: the
    one whose outcome decided the parent comes first (a failure for a
    failed parent, a success for a succeeded one), a cancelled child last.
    So in a fail-fast ``|`` the failing operand is on the path, not the
    sibling it cancelled at that instant.  A cancelled child is on the path
    only as the last child of its parent (the child of a ``.timeout()``).
    """
    if not nodes:
        return ()
    kids: dict[str, list[NodeReport]] = {}
    by_path = {n.path: n for n in nodes}
    for n in nodes:
        parent = _parent(n.path, by_path)
        if parent is not None:
            kids.setdefault(parent, []).append(n)
    out: list[str] = []
    # Stack of nodes to expand; children are pushed in time order so the
    # output comes out in time order.
    stack: list[NodeReport] = [nodes[0]]
    while stack:
        node = stack.pop()
        children = [k for k in kids.get(node.path, ()) if k.end is not None]
        if not children or node.end is None:
            out.append(node.path)
            continue
        chosen: list[NodeReport] = []
        t = node.end
        decided = _deciding(node.status)

        def rank(k: NodeReport) -> tuple[float, int, float, str]:
            assert k.end is not None
            how = 0 if k.status is NodeStatus.CANCELLED else 2 if k.status in decided else 1
            # Reversed below: latest end first, then the deciding outcome,
            # then the latest start; the path keeps ties deterministic.
            return (k.end, how, k.start, k.path)

        for child in sorted(children, key=rank, reverse=True):
            assert child.end is not None
            if chosen and child.status is NodeStatus.CANCELLED:
                # Something else ended it, so it can only be the last one:
                # never the zero-length sibling "before" the failure.
                continue
            if child.end <= t and (not chosen or child is not chosen[-1]):
                chosen.append(child)
                t = child.start
        stack.extend(chosen)  # latest first on the stack's bottom: popped earliest first
    return tuple(out)


def _deciding(status: NodeStatus) -> frozenset[NodeStatus]:
    """The child outcomes that can have decided a parent that ended with ``status``."""
    if status is NodeStatus.SUCCEEDED:
        return frozenset({NodeStatus.SUCCEEDED})
    if status in (NodeStatus.FAILED, NodeStatus.TIMED_OUT):
        return frozenset({NodeStatus.FAILED, NodeStatus.TIMED_OUT})
    return frozenset()


def _parent(path: str, known: Mapping[str, object]) -> str | None:
    """The nearest ancestor path that has a report (some nodes emit nothing)."""
    while "/" in path:
        path = path.rsplit("/", 1)[0]
        if path in known:
            return path
    return None
