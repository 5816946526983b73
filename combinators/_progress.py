"""A live progress display of a run, drawn with rich: one observer for scripts, notebooks and the command line.

``rich`` is the optional ``cli`` extra; it is imported when a
:class:`Progress` is made, never when ``combinators`` is, so the library
works without it and only this display asks for it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Final, TextIO

from ._expr import Agent
from ._observe import TERMINAL, Event, EventKind

if TYPE_CHECKING:
    from rich.console import Console

#: The kinds of node that count as leaves when their events arrive (also
#: those of agents a ``bind`` picks at run time, which no drawing knows).
_LEAF_KINDS: Final = frozenset({"leaf", "const"})

#: Seconds of wall time between updates of rich's task.
_REFRESH_EVERY: Final = 0.05

_NEEDS_RICH: Final = (
    "combinators.Progress draws with rich, which is not installed; "
    "install the cli extra: pip install 'combinators[cli]'"
)


class Progress:
    """A live display of one run: leaves done out of leaves known, failures, and what runs now.

    An observer (pass it as ``observer=``), which reads only the events'
    ``kind``, ``path`` and ``node`` (docs/observability.md).  The bar's total
    is ``total`` when given (the number of leaf runs you expect, like
    ``len(inputs)`` for ``each`` over one leaf), else the leaves drawn in the
    tree, and it grows with the leaf runs seen (an ``each`` starts one per
    element, a retry one per attempt).

    The display starts at the first event and stops when the run's root
    node ends; or use it as a context manager, which starts and stops it
    around the block for sure (what ``stream`` or several runs need).
    ``console`` is a rich ``Console`` (default: one on stderr) or a text
    stream to draw on; ``transient=True`` clears the display when it stops.

    >>> import io
    >>> from rich.console import Console
    >>> from combinators import each, pure, run_sync
    >>> batch = each(pure(str.upper).named("shout")).named("batch")
    >>> out = io.StringIO()
    >>> progress = Progress(batch, total=3, console=Console(file=out, width=60))
    >>> run_sync(batch, ["a", "b", "c"], observer=progress)
    <Success: ['A', 'B', 'C']>
    >>> (progress.done, progress.failed, progress.running)
    (3, 0, 0)
    >>> "batch" in out.getvalue() and "3/3" in out.getvalue()
    True
    """

    def __init__(
        self,
        agent: Agent[Any, Any, Any],
        *,
        total: int | None = None,
        console: Console | TextIO | None = None,
        transient: bool = False,
    ) -> None:
        try:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )
            from rich.progress import Progress as RichProgress
        except ImportError as exc:
            raise ImportError(_NEEDS_RICH, name=exc.name) from exc
        if not isinstance(agent, Agent):
            msg = f"Progress() expects the Agent it will show, got {type(agent).__name__} {agent!r}"
            raise TypeError(msg)
        if total is not None and (isinstance(total, bool) or not isinstance(total, int) or total < 0):
            msg = f"Progress(): total must be an int >= 0 or None, got {total!r}"
            raise ValueError(msg)
        leaves = [n for n in agent.walk() if not n.children()]
        self._root: Final = agent.name
        self._leaf_kinds: Final = _LEAF_KINDS | {n.kind for n in leaves}
        self._total = len(leaves) if total is None else total
        #: Leaf runs started, ended, and ended in failure (or timed out).
        self.started = 0
        self.done = 0
        self.failed = 0
        self._running: dict[str, None] = {}  # paths, oldest first
        self._live = False
        self._next_refresh = 0.0  # time.monotonic(): the display's pace is the wall clock's
        if console is None:
            console = Console(stderr=True)
        elif not isinstance(console, Console):
            console = Console(file=console)
        self._progress: Final = RichProgress(
            SpinnerColumn(),
            TextColumn("[bold]{task.fields[name]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=console,
            transient=transient,
        )
        self._task: Final = self._progress.add_task("", total=self._total, name=agent.name)

    def __repr__(self) -> str:
        return f"<Progress {self._root!r}: {self.done}/{max(self._total, self.started)} done, {self.failed} failed>"

    @property
    def running(self) -> int:
        """Leaf runs started and not ended."""
        return len(self._running)

    def start(self) -> None:
        """Start drawing (done by the first event, or by ``with``)."""
        if not self._live:
            self._live = True
            self._progress.start()

    def stop(self) -> None:
        """Draw the last state and stop (done when the root ends, or by ``with``)."""
        if self._live:
            self._live = False
            self._refresh()
            self._progress.stop()

    def __enter__(self) -> Progress:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __call__(self, event: Event) -> None:
        if not self._live:
            self.start()
        if event.node in self._leaf_kinds:
            if event.kind is EventKind.STARTED:
                self.started += 1
                self._running[event.path] = None
            elif event.kind in TERMINAL:
                self._running.pop(event.path, None)
                self.done += 1
                if event.kind is not EventKind.SUCCEEDED and event.kind is not EventKind.CANCELLED:
                    self.failed += 1
            # rich redraws at most 10 times a second anyway: telling it
            # more often only costs the run (the last state is drawn on stop).
            now = time.monotonic()
            if now >= self._next_refresh:
                self._next_refresh = now + _REFRESH_EVERY
                self._refresh()
        if event.path == self._root and event.kind in TERMINAL:
            self.stop()

    def _refresh(self) -> None:
        now = next(iter(self._running), "")  # the longest running
        failed = f"[red]{self.failed} failed[/red] " if self.failed else ""
        self._progress.update(
            self._task,
            completed=self.done,
            total=max(self._total, self.started),
            description=f"{failed}{len(self._running)} running {now}".rstrip(),
        )
