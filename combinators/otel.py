"""OpenTelemetry spans for a run (the optional ``combinators[otel]`` extra).

:class:`OtelObserver` turns the events of a run into spans through
``opentelemetry-api``: one span per node run, parented to the span of the
nearest enclosing node, named after the node, with the node path, kind and
outcome as attributes.  Which SDK, exporter and sampler receive them is the
application's choice, as usual with OpenTelemetry.

Span times come from trio's clock, placed on the wall clock at the first
event (``time.time_ns()`` then), so a run under a ``MockClock`` still gives
spans of the virtual durations.

>>> from combinators import pure, run_sync
>>> from combinators.otel import OtelObserver
>>> _ = run_sync(pure(abs), -1, observer=OtelObserver())  # the no-op tracer
"""

from __future__ import annotations

import time

from opentelemetry import trace
from opentelemetry.trace import Span, StatusCode, Tracer

from ._observe import TERMINAL, Event, EventKind

__all__ = ["OtelObserver"]


class OtelObserver:
    """An observer that reports every node run as an OpenTelemetry span.

    ``tracer`` defaults to ``trace.get_tracer("combinators")`` of the global
    tracer provider.  A span's parent is the open span of the nearest
    ancestor path, or the span current when the run started (so a run
    inside an application span nests under it).
    """

    def __init__(self, tracer: Tracer | None = None) -> None:
        self._tracer = tracer if tracer is not None else trace.get_tracer("combinators")
        self._open: dict[str, list[Span]] = {}
        self._offset_ns: int | None = None

    def _ns(self, t: float) -> int:
        if self._offset_ns is None:
            self._offset_ns = time.time_ns() - int(t * 1e9)
        return self._offset_ns + int(round(t * 1e9))

    def _parent(self, path: str) -> Span | None:
        while "/" in path:
            path = path.rsplit("/", 1)[0]
            spans = self._open.get(path)
            if spans:
                return spans[-1]
        return None

    def __call__(self, event: Event) -> None:
        if event.kind is EventKind.STARTED:
            parent = self._parent(event.path)
            context = trace.set_span_in_context(parent) if parent is not None else None
            span = self._tracer.start_span(
                event.path.rsplit("/", 1)[-1],
                context=context,
                attributes={"combinators.path": event.path, "combinators.kind": event.node},
                start_time=self._ns(event.time),
            )
            self._open.setdefault(event.path, []).append(span)
        elif event.kind is EventKind.RETRIED:
            spans = self._open.get(event.path)
            if spans:
                spans[-1].add_event(
                    "retried",
                    {"combinators.attempt": event.attempt, "combinators.error": repr(event.error)},
                    timestamp=self._ns(event.time),
                )
        elif event.kind in TERMINAL:
            spans = self._open.get(event.path)
            if not spans:
                return
            span = spans.pop()
            if not spans:
                del self._open[event.path]
            span.set_attribute("combinators.status", event.kind.value)
            if event.kind is EventKind.SUCCEEDED:
                span.set_status(StatusCode.OK)
            elif event.kind is not EventKind.CANCELLED:
                span.set_status(StatusCode.ERROR, repr(event.error))
            span.end(end_time=self._ns(event.time))
