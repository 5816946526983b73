"""Agents that call an OpenAI-compatible chat endpoint over HTTP, against a local stub.

Run it with ``uv run python -m examples.llm_http``; it needs no network:
it starts a stub ``POST /v1/chat/completions`` server (Starlette under
uvicorn, on a free local port) that answers slowly, says ``429 Too Many
Requests`` with a ``Retry-After`` header the first time it sees a prompt
that mentions "busy", and never answers a prompt that mentions "stall".

Two agents speak to it:

* ``chat`` uses **httpx**, which speaks trio through anyio: a plain
  ``agent``, runnable by ``run_sync`` as well as ``aio.run``;
* ``chat_aiohttp`` uses **aiohttp**, which is asyncio-only: an
  ``aio.agent``, whose coroutine runs on the asyncio loop under ``aio.run``.

Both fail with :class:`ChatError`, whose ``retry_after`` (from the header)
``.retry()`` honours — the ``RetryAfter`` protocol — so a 429 waits as long
as the server asked, not the backoff's guess.  The tree limits the calls in
flight with one shared limiter and gives each question a deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import attrs
import httpx
from returns.result import Failure, Result, Success
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from combinators import Agent, Backoff, PriorityLimiter, TimedOut, agent, aio, collect, each, run_sync
from examples.service import serving

MODEL = "stub-1"


@attrs.frozen
class ChatError:
    """A failed chat call; ``retry_after`` is the server's hint (``RetryAfter``)."""

    status: int
    retry_after: float | None = None


@attrs.define
class Stub:
    """The stub's record: calls per prompt (with the loop time each came) and the peak in flight."""

    delay: float = 0.02
    retry_after: float = 0.1
    stall: float = 0.5  # longer than any deadline below
    calls: dict[str, list[float]] = attrs.Factory(dict)
    in_flight: int = 0
    peak: int = 0

    def app(self) -> Starlette:
        async def completions(request: Request) -> JSONResponse:
            body = await request.json()
            prompt = body["messages"][-1]["content"]
            seen = self.calls.setdefault(prompt, [])
            seen.append(asyncio.get_running_loop().time())
            if "busy" in prompt and len(seen) == 1:
                headers = {"Retry-After": f"{self.retry_after:g}"}
                return JSONResponse({"error": {"message": "rate limited"}}, status_code=429, headers=headers)
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            try:
                await asyncio.sleep(self.stall if "stall" in prompt else self.delay)
            finally:
                self.in_flight -= 1
            answer = f"{len(prompt.split())} words, the longest {max(prompt.split(), key=len)!r}"
            return JSONResponse(
                {
                    "id": f"chatcmpl-{len(self.calls)}",
                    "object": "chat.completion",
                    "model": body["model"],
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}}],
                }
            )

        return Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])


def _request(prompt: str) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": prompt}]}


def _answer(status: int, headers: Callable[[str], str | None], payload: Callable[[], Any]) -> Result[str, ChatError]:
    if status != 200:
        hint = headers("retry-after")
        return Failure(ChatError(status, float(hint) if hint else None))
    content: str = payload()["choices"][0]["message"]["content"]
    return Success(content)


def chat_agents(base_url: str) -> tuple[Agent[str, str, ChatError], Agent[str, str, ChatError]]:
    """The httpx agent (runs on trio) and the aiohttp agent (runs on asyncio) for ``base_url``."""
    url = f"{base_url}/v1/chat/completions"

    @agent
    async def chat(prompt: str) -> Result[str, ChatError]:
        # A client per call keeps the example short; a service would keep
        # one open for the whole run (created inside it).
        async with httpx.AsyncClient(timeout=None) as client:
            response = await client.post(url, json=_request(prompt))
            return _answer(response.status_code, response.headers.get, response.json)

    @aio.agent
    async def chat_aiohttp(prompt: str) -> Result[str, ChatError]:
        async with aiohttp.ClientSession() as session, session.post(url, json=_request(prompt)) as response:
            payload = await response.json() if response.status == 200 else None
            return _answer(response.status, response.headers.get, lambda: payload)

    return chat, chat_aiohttp


def robust(call: Agent[str, str, ChatError], slots: PriorityLimiter, deadline: float) -> Agent[str, str, ChatError | TimedOut]:
    """Retry 429s as long as the server asks, at most ``slots`` calls in flight, ``deadline`` per question."""
    return (
        call.limit(slots)
        .retry(3, backoff=Backoff(base=0.01), when=lambda e: e.status == 429)
        .timeout(deadline)
    )


QUESTIONS = [
    "what is structured concurrency",
    "busy servers ask clients to wait",
    "why are cancel scopes nested",
    "busy again: how long is Retry-After",
    "explain trio guest mode briefly",
]


def main() -> None:
    stub = Stub()
    with serving(stub.app()) as base:
        chat, chat_aiohttp = chat_agents(base)
        slots = PriorityLimiter(2)  # the provider's concurrency, for every run below

        # httpx speaks trio: the tree runs under plain run_sync too.
        answers = run_sync(each(robust(chat, slots, deadline=5)), QUESTIONS)
        for question, answer in zip(QUESTIONS, answers.unwrap(), strict=True):
            print(f"httpx   {question!r}: {answer}")

        # aiohttp is asyncio-only: aio.agent, run from asyncio with aio.run.
        both = collect(robust(chat_aiohttp, slots, 5) | robust(chat, slots, 5))
        pair = asyncio.run(aio.run(both, "busy aiohttp and httpx at once"))
        for name, outcome in zip(("aiohttp", "httpx"), pair.unwrap(), strict=True):
            print(f"{name:7} {outcome}")

        stalled = asyncio.run(aio.run(robust(chat_aiohttp, slots, 0.2), "stall forever"))
        print(f"stall   {stalled}")

    # From the 429 to the last call for that prompt (the retry).
    waits = [times[-1] - times[0] for prompt, times in stub.calls.items() if "busy" in prompt]
    honoured = all(w >= stub.retry_after for w in waits)
    print(f"429s retried after the server's Retry-After of {stub.retry_after:g}s: {honoured} ({len(waits)} prompts)")
    print(f"requests in flight at the stub, at most: {stub.peak} (limiter of {slots.total})")


if __name__ == "__main__":
    main()
