"""A draft -> critique -> revise loop with ``repeat``, one research note per stock.

Run it with ``uv run python -m examples.refine_loop`` (or
``uv run python examples/refine_loop.py``).

A writer drafts a note from the quote, a critic lists what the note still
misses (every note needs valuation and momentum; a volatile stock also
needs a word on volatility, one far below its high a word on drawdown),
and the writer revises one point per round.  ``repeat`` runs revise >>
critique until nothing is missing, at most ``MAX_ROUNDS`` times, and gives
up with ``GaveUp(last_state, rounds)`` otherwise.  ``when`` skips the loop
for a draft the critic already accepts (a ``repeat`` always runs one round).
Each round has its own node path, printed below for one symbol.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import Never

if __package__ in (None, ""):  # run as a script: make `examples` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import attrs
import trio
from returns.result import Failure, Result, Success

from combinators import Agent, EventKind, GaveUp, Recorder, agent, pure, repeat, run, when
from examples.market import SYMBOLS, Quote, UnknownSymbol, fetch_quote

MAX_ROUNDS = 2


@attrs.frozen
class Note:
    """A research note: its quote and the points written so far."""

    quote: Quote
    points: tuple[tuple[str, str], ...]  # (topic, sentence)

    @property
    def topics(self) -> tuple[str, ...]:
        return tuple(topic for topic, _ in self.points)

    def text(self) -> str:
        return " ".join(sentence for _, sentence in self.points)


@attrs.frozen
class Reviewed:
    """A note with the critic's list of topics it still misses."""

    note: Note
    missing: tuple[str, ...]


def _facts(quote: Quote) -> dict[str, str]:
    closes = quote.closes
    mean = statistics.fmean(closes)
    daily = [b / a - 1 for a, b in zip(closes, closes[1:], strict=False)]
    long = statistics.fmean(closes[-20:])
    trend = (statistics.fmean(closes[-5:]) - long) / long
    drop = (max(closes) - quote.last) / max(closes)
    return {
        "valuation": f"{quote.symbol} closed at {quote.last:.2f} against a 60-day mean of {mean:.2f}.",
        "momentum": f"Its 5-day average runs {trend:+.1%} against the 20-day.",
        "volatility": f"Daily moves average {statistics.pstdev(daily):.1%}, so size positions small.",
        "drawdown": f"It trades {drop:.0%} below its 60-day high.",
    }


def _required(quote: Quote) -> tuple[str, ...]:
    closes = quote.closes
    daily = [b / a - 1 for a, b in zip(closes, closes[1:], strict=False)]
    needed = ["valuation", "momentum"]
    if statistics.pstdev(daily) > 0.019:
        needed.append("volatility")
    if (max(closes) - quote.last) / max(closes) > 0.07:
        needed.append("drawdown")
    return tuple(needed)


@agent
async def draft(quote: Quote) -> Result[Note, Never]:
    """The writer's first draft: valuation only (0.3 s, like a model call)."""
    await trio.sleep(0.3)
    return Success(Note(quote, (("valuation", _facts(quote)["valuation"]),)))


@agent
async def critique(note: Note) -> Result[Reviewed, Never]:
    """The critic: which required topics the note does not cover yet (0.1 s)."""
    await trio.sleep(0.1)
    return Success(Reviewed(note, tuple(t for t in _required(note.quote) if t not in note.topics)))


@agent
async def revise(reviewed: Reviewed) -> Result[Note, Never]:
    """The writer adds the first missing point (0.2 s)."""
    await trio.sleep(0.2)
    note = reviewed.note
    topic = reviewed.missing[0]
    return Success(attrs.evolve(note, points=note.points + ((topic, _facts(note.quote)[topic]),)))


def accepted(reviewed: Reviewed) -> bool:
    return not reviewed.missing


def as_is(reviewed: Reviewed) -> Reviewed:
    return reviewed


#: One round: revise, then critique again.  Reviewed -> Reviewed, as repeat requires.
revision: Agent[Reviewed, Reviewed, Never] = (revise >> critique).named("revision")

refine: Agent[Reviewed, Reviewed, GaveUp[Reviewed]] = when(
    accepted,
    pure(as_is),
    repeat(revision, until=accepted, max_times=MAX_ROUNDS).named("loop"),
).named("refine")

write_note: Agent[str, Reviewed, UnknownSymbol | GaveUp[Reviewed]] = (
    fetch_quote >> draft >> critique >> refine
).named("write_note")


def describe(result: Result[Reviewed, UnknownSymbol | GaveUp[Reviewed]]) -> str:
    match result:
        case Success(Reviewed(note, _)):
            return note.text()
        case Failure(GaveUp(Reviewed(note, missing), rounds)):
            return f"gave up after {rounds} rounds, still missing {', '.join(missing)}: {note.text()}"
        case Failure(UnknownSymbol(symbol)):
            return f"unknown symbol {symbol!r}"
    return repr(result)  # pragma: no cover - exhaustive above


async def main() -> list[str]:
    lines: list[str] = []
    for symbol in SYMBOLS:
        recorder = Recorder()
        start = trio.current_time()
        result = await run(write_note, symbol, observer=recorder)
        took = trio.current_time() - start
        rounds = sum(1 for e in recorder.events if e.kind is EventKind.STARTED and e.path.endswith("/revision"))
        lines.append(f"{symbol:<5} [{rounds} round(s), {took:.2f}s] {describe(result)}")
        if symbol == "TSLA":
            lines.extend(
                f"        {e.path}"
                for e in recorder.events
                if e.kind is EventKind.STARTED and "/round-" in e.path and e.path.endswith("/revision")
            )
    return lines


if __name__ == "__main__":
    print(f"Draft -> critique -> revise, at most {MAX_ROUNDS} rounds per note")
    for line in trio.run(main):
        print(" ", line)
