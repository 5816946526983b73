"""Agents for the command-line test of asyncio leaves (``python -m combinators run tests.aio_agents:quote``)."""

from __future__ import annotations

import asyncio

import attrs
from returns.result import Failure, Result, Success

from combinators import Agent, aio, pure


@attrs.frozen
class Ask:
    symbol: str
    qty: int


@aio.agent
async def price(ask: Ask) -> Result[float, str]:
    await asyncio.sleep(0)  # asyncio only: fails outside an asyncio loop
    return Success(2.5 * ask.qty) if ask.symbol == "AAPL" else Failure(f"unknown {ask.symbol}")


def _rounded(x: float) -> float:
    return round(x, 2)


quote: Agent[Ask, float, str] = (price >> pure(_rounded)).named("quote")
