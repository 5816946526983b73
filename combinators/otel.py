"""OpenTelemetry spans for a run (the optional ``combinators[otel]`` extra).

:class:`OtelObserver` turns the events of a run into spans through
``opentelemetry-api``: one span per node run, parented to the span of the
nearest enclosing node, named after the node, with the node path, kind and
outcome as attributes.  Which SDK, exporter and sampler receive them is the
application's choice, as usual with OpenTelemetry.

Span times come from trio's clock, placed on the wall clock at the start
of each run (``time.time_ns()`` when the run's root node starts), so a run
under a ``MockClock`` still gives spans of the virtual durations.  Every
run is anchored afresh because trio's clock has its own origin in each
``trio.run``: one observer can serve many runs, one after another or at
once.

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

    >>> from opentelemetry.sdk.trace import TracerProvider
    >>> from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    >>> from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    >>> from combinators import pure, run_sync
    >>> exporter, provider = InMemorySpanExporter(), TracerProvider()
    >>> provider.add_span_processor(SimpleSpanProcessor(exporter))
    >>> tree = (pure(abs).named("abs") >> pure(str).named("str")).named("pipeline")
    >>> _ = run_sync(tree, -1, observer=OtelObserver(provider.get_tracer("demo")))
    >>> sorted(span.attributes["combinators.path"] for span in exporter.get_finished_spans())
    ['pipeline', 'pipeline/abs', 'pipeline/str']
    """

    def __init__(self, tracer: Tracer | None = None) -> None:
        self._tracer = tracer if tracer is not None else trace.get_tracer("combinators")
        # Per path, the open spans with the wall-clock offset (ns) of the
        # run they belong to.
        self._open: dict[str, list[tuple[Span, int]]] = {}

    def _parent(self, path: str) -> tuple[Span, int] | None:
        while "/" in path:
            path = path.rsplit("/", 1)[0]
            spans = self._open.get(path)
            if spans:
                return spans[-1]
        return None

    def __call__(self, event: Event) -> None:
        if event.kind is EventKind.STARTED:
            parent = self._parent(event.path)
            if parent is None:
                # A run's root: anchor this run's trio times on the wall clock.
                context = None
                offset = time.time_ns() - round(event.time * 1e9)
            else:
                context = trace.set_span_in_context(parent[0])
                offset = parent[1]
            span = self._tracer.start_span(
                event.path.rsplit("/", 1)[-1],
                context=context,
                attributes={"combinators.path": event.path, "combinators.kind": event.node},
                start_time=offset + round(event.time * 1e9),
            )
            self._open.setdefault(event.path, []).append((span, offset))
        elif event.kind is EventKind.RETRIED:
            spans = self._open.get(event.path)
            if spans:
                span, offset = spans[-1]
                span.add_event(
                    "retried",
                    {"combinators.attempt": event.attempt, "combinators.error": repr(event.error)},
                    timestamp=offset + round(event.time * 1e9),
                )
        elif event.kind is EventKind.CHARGED:
            spans = self._open.get(event.path)
            if spans:
                used = event.value.used
                for field in used.set_fields():
                    spans[-1][0].set_attribute(f"combinators.usage.{field}", getattr(used, field))
                if event.value.overspent:
                    spans[-1][0].set_attribute("combinators.overspent", list(event.value.overspent))
        elif event.kind is EventKind.CACHED:
            spans = self._open.get(event.path)
            if spans:
                spans[-1][0].set_attribute("combinators.cache_hit", True)
        elif event.kind in TERMINAL:
            spans = self._open.get(event.path)
            if not spans:
                return
            span, offset = spans.pop()
            if not spans:
                del self._open[event.path]
            span.set_attribute("combinators.status", event.kind.value)
            if event.kind is EventKind.SUCCEEDED:
                span.set_status(StatusCode.OK)
            elif event.kind is not EventKind.CANCELLED:
                span.set_status(StatusCode.ERROR, repr(event.error))
            span.end(end_time=offset + round(event.time * 1e9))
