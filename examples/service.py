"""A Starlette service whose endpoint runs a typed tree through ``combinators.aio``.

Run it with ``uv run python -m examples.service``: it starts the app under
uvicorn on a free local port, sends concurrent requests with httpx, drops
one of them mid-flight (a client disconnect), and prints what happened.

``GET /analyze?id=...&text=...`` runs, per request::

    fetch >> (summarize | classify | keywords).timeout(t) >> store

* ``fetch`` and ``store`` are asyncio leaves (``aio.agent``): they stand for
  an asyncio-only client (a database driver, an aiohttp call);
* the three "LLM" agents share **one** process-wide limiter, ``LLM_SLOTS``:
  however many requests are in flight, at most its size of LLM calls run at
  once (a provider's concurrency limit is per API key, not per request);
* the fan-out has a timeout (504 when it fires);
* when the client goes away, the endpoint cancels its run: every leaf of
  that request stops, asyncio leaves included, and the others go on.

Delays come from the query (``delay`` for each LLM call, ``hang`` for
``fetch``, ``timeout`` for the fan-out), so the test can make one request
hang without slowing the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any, Never

import attrs
import httpx
import trio
import uvicorn
from returns.result import Failure, Result, Success
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from combinators import Agent, PriorityLimiter, TimedOut, agent, aio, pure

#: The LLM provider's concurrency, shared by every request of this process.
LLM_SLOTS = PriorityLimiter(3)


@attrs.frozen
class Job:
    id: str
    text: str
    delay: float = 0.02  # seconds per LLM call
    hang: float = 0.0  # seconds fetch waits (a slow upstream)


@attrs.frozen
class Doc:
    job: Job
    words: tuple[str, ...]


@attrs.frozen
class Report:
    id: str
    summary: str
    label: str
    keywords: tuple[str, ...]


@attrs.frozen
class LLMError:
    """What a failed LLM call gives (the service maps it to 502)."""

    reason: str


@attrs.define
class Meter:
    """What the leaves did, per job id, and how many LLM calls ran at once (the test reads it)."""

    events: list[tuple[str, str, str]] = attrs.Factory(list)
    llm_running: int = 0
    llm_peak: int = 0
    changed: threading.Condition = attrs.Factory(threading.Condition)

    def record(self, job: str, leaf: str, what: str) -> None:
        with self.changed:
            self.events.append((job, leaf, what))
            self.changed.notify_all()

    def of(self, job: str, what: str) -> list[str]:
        with self.changed:
            return [leaf for j, leaf, w in self.events if j == job and w == what]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        with self.changed:
            return self.changed.wait_for(predicate, timeout)

    @contextlib.contextmanager
    def leaf(self, job: Job, name: str) -> Iterator[None]:
        """Record start, then finish or cancel (an exception on the way out)."""
        self.record(job.id, name, "started")
        try:
            yield
        except BaseException:
            self.record(job.id, name, "cancelled")
            raise
        self.record(job.id, name, "finished")


def build_tree(meter: Meter, slots: PriorityLimiter, timeout: float) -> Agent[Job, Report, LLMError | TimedOut]:
    """The per-request tree; ``slots`` is shared by all requests."""

    @aio.agent
    async def fetch(job: Job) -> Result[Doc, LLMError]:
        with meter.leaf(job, "fetch"):
            await asyncio.sleep(job.hang)  # an asyncio-only upstream
        return Success(Doc(job, tuple(job.text.split())))

    def llm(name: str, answer: Callable[[Doc], Any]) -> Agent[Doc, Any, LLMError]:
        async def call(doc: Doc) -> Result[Any, LLMError]:
            with meter.leaf(doc.job, name):
                meter.llm_running += 1
                meter.llm_peak = max(meter.llm_peak, meter.llm_running)
                try:
                    await trio.sleep(doc.job.delay)  # the model thinking
                finally:
                    meter.llm_running -= 1
            if not doc.words:
                return Failure(LLMError("empty document"))
            return Success(answer(doc))

        call.__name__ = name
        return agent(call).limit(slots)

    summarize: Agent[Doc, str, LLMError] = llm("summarize", lambda d: " ".join(d.words[:3]) + "...")
    classify: Agent[Doc, str, LLMError] = llm("classify", lambda d: "long" if len(d.words) > 5 else "short")
    keywords: Agent[Doc, tuple[str, ...], LLMError] = llm(
        "keywords", lambda d: tuple(sorted({w.lower() for w in d.words if len(w) > 4}))
    )

    @aio.agent
    async def store(report: Report) -> Result[Report, LLMError]:
        with meter.leaf(Job(report.id, ""), "store"):
            await asyncio.sleep(0)  # an asyncio database write
        return Success(report)

    def assemble(parts: tuple[Doc, tuple[str, str, tuple[str, ...]]]) -> Report:
        doc, (summary, label, words) = parts
        return Report(doc.job.id, summary, label, words)

    keep_doc: Agent[Doc, Doc, Never] = pure(_same)  # so the report knows which job it is
    analyses = (summarize | classify | keywords).timeout(timeout).named("analyses")
    return (fetch >> (keep_doc | analyses) >> pure(assemble) >> store).named("analyze")


def make_app(*, meter: Meter | None = None, slots: PriorityLimiter = LLM_SLOTS, timeout: float = 30.0) -> Starlette:
    """The app; ``meter`` sees what the leaves do."""
    seen = meter if meter is not None else Meter()
    trees: dict[float, Agent[Job, Report, LLMError | TimedOut]] = {}

    def tree_for(seconds: float) -> Agent[Job, Report, LLMError | TimedOut]:
        # One tree per timeout value: its plan is compiled once and reused
        # by every request (a shared limiter is not per-run state).
        if seconds not in trees:
            trees[seconds] = build_tree(seen, slots, seconds)
        return trees[seconds]

    async def analyze(request: Request) -> Response:
        q = request.query_params
        job = Job(q.get("id", "anon"), q.get("text", ""), float(q.get("delay", 0.02)), float(q.get("hang", 0)))
        running = asyncio.ensure_future(aio.run(tree_for(float(q.get("timeout", timeout))), job))
        gone = asyncio.ensure_future(_disconnected(request))
        await asyncio.wait({running, gone}, return_when=asyncio.FIRST_COMPLETED)
        if not running.done():
            # The client went away: cancel the run; awaiting it returns once
            # every leaf of it has stopped.
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
            seen.record(job.id, "request", "dropped")
            return Response(status_code=499)
        gone.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await gone
        match running.result():
            case Success(report):
                return JSONResponse(attrs.asdict(report))
            case Failure(TimedOut() as timed_out):
                return JSONResponse({"error": f"timed out after {timed_out.seconds:g}s"}, status_code=504)
            case Failure(error):
                return JSONResponse({"error": str(error)}, status_code=502)
        raise AssertionError("unreachable")

    return Starlette(routes=[Route("/analyze", analyze)])


def _same(doc: Doc) -> Doc:
    return doc


async def _disconnected(request: Request) -> None:
    """Return when the client has closed the connection (ASGI ``http.disconnect``)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


@contextlib.contextmanager
def serving(app: Starlette) -> Iterator[str]:
    """Run ``app`` under uvicorn in a thread on a free local port; give its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # A handler still running at shutdown is cancelled after a second.
    config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            threading.Event().wait(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


TEXTS = {
    "a": "Structured concurrency makes cancellation reliable and composable",
    "b": "Rate limits are per key",
    "c": "",
    "d": "Trio guest mode runs inside the asyncio event loop without blocking it",
}


async def demo(base: str, meter: Meter) -> list[str]:
    """Concurrent requests, one dropped by its client while its fetch hangs."""
    lines: list[str] = []
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        hanging = asyncio.ensure_future(client.get("/analyze", params={"id": "dropped", "text": "x y z", "hang": 60}))
        calls = {k: client.get("/analyze", params={"id": k, "text": t}) for k, t in TEXTS.items()}
        calls["slow"] = client.get("/analyze", params={"id": "slow", "text": "a b c", "delay": 1, "timeout": 0.05})
        responses = dict(zip(calls, await asyncio.gather(*calls.values()), strict=True))
        await asyncio.to_thread(meter.wait_for, lambda: bool(meter.of("dropped", "started")))
        hanging.cancel()  # the client disconnects
        with contextlib.suppress(asyncio.CancelledError):
            await hanging
    await asyncio.to_thread(meter.wait_for, lambda: bool(meter.of("dropped", "dropped")))
    for key, response in responses.items():
        lines.append(f"{key:5} {response.status_code} {response.json()}")
    lines.append(f"dropped: started {meter.of('dropped', 'started')}, cancelled {meter.of('dropped', 'cancelled')}")
    lines.append(f"LLM calls at once, at most: {meter.llm_peak} (limiter of {LLM_SLOTS.total})")
    return lines


def main() -> None:
    meter = Meter()
    with serving(make_app(meter=meter)) as base:
        for line in asyncio.run(demo(base, meter)):
            print(line)


if __name__ == "__main__":
    main()
