"""Small agents for the command-line tests (``python -m combinators run tests.cli_agents:...``)."""

from __future__ import annotations

from typing import Literal, Never

import attrs
import trio
from returns.result import Failure, Result, Success

from combinators import Agent, agent, each, pure


@attrs.frozen
class Order:
    symbol: str
    qty: int
    side: Literal["buy", "sell"] = "buy"


@attrs.frozen
class Receipt:
    symbol: str
    cost: float


@attrs.frozen
class Refused:
    reason: str


@agent
async def double(x: int) -> Result[int, Never]:
    await trio.sleep(0.01)
    return Success(2 * x)


@agent
async def place(order: Order) -> Result[Receipt, Refused]:
    if order.qty > 100:
        return Failure(Refused(f"{order.qty} is too many"))
    return Success(Receipt(order.symbol, order.qty * 1.5))


def _explode(x: int) -> int:
    raise RuntimeError(f"cannot handle {x}")


broken: Agent[int, int, Never] = pure(_explode).named("broken")

fan: Agent[int, tuple[int, int], Never] = (double >> (double | double.named("again"))).named("fan")

batch = each(double).named("batch")

not_an_agent = 42


def plain_function(x: int) -> int:
    return x


def _tripled_and_counted(x: int) -> int:
    """Appends a line to $COMBINATORS_CLI_COUNTER each time it really runs."""
    import os

    counter = os.environ.get("COMBINATORS_CLI_COUNTER")
    if counter:
        with open(counter, "a") as handle:
            handle.write(f"{x}\n")
    return 3 * x


counted: Agent[int, int, Never] = pure(_tripled_and_counted).named("counted")


def _huge(x: int) -> int:
    return 10**5000 + x


def _circular(x: int) -> list[object]:
    out: list[object] = [x]
    out.append(out)
    return out


def _deep(x: int) -> list[object]:
    out: list[object] = [x]
    for _ in range(100_000):
        out = [out]
    return out


huge: Agent[int, int, Never] = pure(_huge).named("huge")
circular: Agent[int, list[object], Never] = pure(_circular).named("circular")
deep: Agent[int, list[object], Never] = pure(_deep).named("deep")
