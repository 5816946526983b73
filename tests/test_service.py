"""examples/service.py under a real uvicorn server, with real HTTP requests.

Requests run concurrently through ``aio.run``; two are dropped by their
client mid-flight — one while its asyncio ``fetch`` waits, one while its
LLM calls hold the shared limiter's slots — and the others, queued behind
those slots, must then finish.  Everything waits on the meter's events,
never on elapsed time; the LLM calls take 10 ms.
"""

from __future__ import annotations

import asyncio
import contextlib

import httpx

from combinators import PriorityLimiter
from examples.service import Meter, make_app, serving


def test_service_limits_across_requests_and_stops_a_dropped_request() -> None:
    meter = Meter()
    slots = PriorityLimiter(3)

    async def client(base: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:

            def get(job: str, **params: float) -> asyncio.Future[httpx.Response]:
                query: dict[str, str | float] = {"id": job, "text": f"words of request {job} here", "delay": 0.01, **params}
                return asyncio.ensure_future(http.get("/analyze", params=query))

            in_fetch = get("in_fetch", hang=600)
            in_llm = get("in_llm", delay=600)
            await asyncio.to_thread(
                meter.wait_for, lambda: bool(meter.of("in_fetch", "started")) and bool(meter.of("in_llm", "started"))
            )
            others = [get(f"r{i}") for i in range(12)]
            await asyncio.sleep(0.05)  # let them queue behind in_llm's slots
            for dropped in (in_fetch, in_llm):
                dropped.cancel()  # the client disconnects
                with contextlib.suppress(asyncio.CancelledError):
                    await dropped
            return list(await asyncio.gather(*others))

    with serving(make_app(meter=meter, slots=slots)) as base:
        responses = asyncio.run(client(base))
        assert meter.wait_for(lambda: len(meter.of("in_fetch", "dropped") + meter.of("in_llm", "dropped")) == 2)

    assert [r.status_code for r in responses] == [200] * 12
    assert [r.json()["id"] for r in responses] == [f"r{i}" for i in range(12)]
    for i in range(12):
        assert sorted(meter.of(f"r{i}", "finished")) == ["classify", "fetch", "keywords", "store", "summarize"]
    # The dropped requests: every leaf that started was cancelled, none finished.
    assert meter.of("in_fetch", "started") == meter.of("in_fetch", "cancelled") == ["fetch"]
    started = meter.of("in_llm", "started")
    assert "summarize" in started or "classify" in started or "keywords" in started
    assert sorted(meter.of("in_llm", "cancelled")) == sorted(s for s in started if s != "fetch")
    assert meter.of("in_llm", "finished") == ["fetch"]
    # One limiter for the whole process: never more than 3 LLM calls at once.
    assert 1 <= meter.llm_peak <= 3
    assert meter.llm_running == 0
    assert slots.borrowed == 0 and slots.waiting == 0


def test_service_times_out_with_504() -> None:
    meter = Meter()

    async def client(base: str) -> httpx.Response:
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            return await http.get("/analyze", params={"id": "t", "text": "a b", "delay": 600, "timeout": 0.05})

    with serving(make_app(meter=meter, slots=PriorityLimiter(3))) as base:
        response = asyncio.run(client(base))
    assert response.status_code == 504
    assert sorted(meter.of("t", "cancelled")) == ["classify", "keywords", "summarize"]
