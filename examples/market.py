"""Shared example data: a small price table and typed analysis agents.

Everything is computed from ``prices.csv`` (60 daily closes of five
symbols, shipped beside this file), so the examples run offline and give
the same answers every time.  Each agent sleeps a little in trio time to
stand in for a network call.
"""

from __future__ import annotations

import csv
import statistics
from functools import cache
from pathlib import Path
from typing import Literal, Never

import attrs
import trio
from returns.result import Failure, Result, Success

from combinators import Agent, agent, pure

SYMBOLS: tuple[str, ...] = ("AAPL", "MSFT", "GOOGL", "AMZN", "TSLA")
PRICES_CSV = Path(__file__).with_name("prices.csv")

Signal = Literal["buy", "hold", "sell"]


@cache
def price_table() -> dict[str, tuple[float, ...]]:
    """Daily closes per symbol, oldest first."""
    with PRICES_CSV.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {s: tuple(float(row[s]) for row in rows) for s in SYMBOLS}


@attrs.frozen
class UnknownSymbol:
    """The price table has no such symbol."""

    symbol: str


@attrs.frozen
class Quote:
    """A symbol with its closing prices, oldest first."""

    symbol: str
    closes: tuple[float, ...]

    @property
    def last(self) -> float:
        return self.closes[-1]


@attrs.frozen
class Analysis:
    """One agent's view of one symbol."""

    symbol: str
    analyst: str
    signal: Signal
    score: float
    confidence: float


def _signal(score: float) -> Signal:
    return "buy" if score > 0.15 else "sell" if score < -0.15 else "hold"


def _clamp(x: float, lo: float = -1.0, hi: float = 1.0) -> float:
    return max(lo, min(hi, x))


# -- leaves -------------------------------------------------------------------


@agent
async def fetch_quote(symbol: str) -> Result[Quote, UnknownSymbol]:
    """Look the symbol up in the price table (50 ms of trio time, like a call)."""
    await trio.sleep(0.05)
    closes = price_table().get(symbol.upper())
    if closes is None:
        return Failure(UnknownSymbol(symbol))
    return Success(Quote(symbol.upper(), closes))


async def _value(quote: Quote) -> Result[Analysis, Never]:
    await trio.sleep(0.1)
    mean = statistics.fmean(quote.closes)
    discount = (mean - quote.last) / mean  # cheap against its own average
    score = _clamp(discount * 10)
    return Success(Analysis(quote.symbol, "value", _signal(score), score, 0.6 + 0.3 * abs(score)))


async def _trading(quote: Quote) -> Result[Analysis, Never]:
    await trio.sleep(0.08)
    short = statistics.fmean(quote.closes[-5:])
    long = statistics.fmean(quote.closes[-20:])
    score = _clamp((short - long) / long * 20)
    return Success(Analysis(quote.symbol, "trading", _signal(score), score, 0.5 + 0.4 * abs(score)))


async def _quality(quote: Quote) -> Result[Analysis, Never]:
    await trio.sleep(0.12)
    returns = [b / a - 1 for a, b in zip(quote.closes, quote.closes[1:], strict=False)]
    vol = statistics.pstdev(returns)
    score = _clamp(1 - vol * 60)  # calm prices score high
    return Success(Analysis(quote.symbol, "quality", _signal(score), score, 0.7))


value_agent: Agent[Quote, Analysis, Never] = agent(_value).named("value")
trading_agent: Agent[Quote, Analysis, Never] = agent(_trading).named("trading")
quality_agent: Agent[Quote, Analysis, Never] = agent(_quality).named("quality")


# -- the sequential pipeline (reference scenario 2) ----------------------------


@attrs.frozen
class ValueReport:
    quote: Quote
    fair_value: float
    margin_of_safety: float


@attrs.frozen
class QualityReport:
    value: ValueReport
    volatility: float
    quality: float


@attrs.frozen
class TradeSetup:
    """What the trading agent needs: the quote and a prior on being right."""

    quote: Quote
    prior_win: float


@attrs.frozen
class TradeSignal:
    symbol: str
    signal: Signal
    win_probability: float
    payoff_ratio: float


@attrs.frozen
class Position:
    symbol: str
    signal: Signal
    kelly_fraction: float

    def describe(self) -> str:
        return f"{self.symbol}: {self.signal}, stake {self.kelly_fraction:.1%} of capital (Kelly)"


@agent
async def value(quote: Quote) -> Result[ValueReport, Never]:
    """Fair value as the 60-day mean; margin of safety against the last close."""
    await trio.sleep(0.1)
    fair = statistics.fmean(quote.closes)
    return Success(ValueReport(quote, fair, (fair - quote.last) / fair))


@agent
async def quality(report: ValueReport) -> Result[QualityReport, Never]:
    """Quality from the volatility of daily returns (calm is good)."""
    await trio.sleep(0.12)
    closes = report.quote.closes
    rets = [b / a - 1 for a, b in zip(closes, closes[1:], strict=False)]
    vol = statistics.pstdev(rets)
    return Success(QualityReport(report, vol, _clamp(1 - vol * 40, 0.0, 1.0)))


def to_trade_setup(report: QualityReport) -> TradeSetup:
    """The transform between quality and trading: a prior from both reports."""
    prior = 0.5 + 0.25 * report.quality * (1 if report.value.margin_of_safety > 0 else 0.5)
    return TradeSetup(report.value.quote, min(prior, 0.8))


@attrs.frozen
class NoEdge:
    """The trading agent sees no trade worth sizing."""

    symbol: str
    reason: str


@agent
async def trading_signal(setup: TradeSetup) -> Result[TradeSignal, NoEdge]:
    """Momentum (5-day vs 20-day average) adjusts the prior into a signal."""
    await trio.sleep(0.08)
    closes = setup.quote.closes
    momentum = (statistics.fmean(closes[-5:]) - statistics.fmean(closes[-20:])) / closes[-1]
    win = _clamp(setup.prior_win + momentum * 5, 0.05, 0.95)
    signal = _signal((win - 0.5) * 4)
    if signal == "hold":
        return Failure(NoEdge(setup.quote.symbol, f"win probability {win:.2f} is too close to a coin flip"))
    return Success(TradeSignal(setup.quote.symbol, signal, win, 1.5))


def kelly(signal: TradeSignal) -> Position:
    """Kelly criterion: f* = p - (1 - p) / b, never below zero."""
    p = signal.win_probability if signal.signal == "buy" else 1 - signal.win_probability
    fraction = max(0.0, p - (1 - p) / signal.payoff_ratio)
    return Position(signal.symbol, signal.signal, fraction)


position_size: Agent[TradeSignal, Position, Never] = pure(kelly).named("position_size")
