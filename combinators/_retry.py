"""Backoff policy for ``.retry()``: exponential, capped, optionally jittered.

Pure data and arithmetic; the waiting itself happens in the interpreter on
trio's clock.
"""

from __future__ import annotations

import math
import random
from typing import Protocol, runtime_checkable

import attrs

from ._exceptions import BuildError
from ._check import _real, _show


@runtime_checkable
class RetryAfter(Protocol):
    """An error value carrying a server's hint: wait at least this many seconds.

    ``.retry()`` waits ``max(backoff, retry_after)`` before the next attempt.

    >>> import attrs
    >>> from combinators import Backoff
    >>> from combinators.testing import Calls, fake, run_virtual
    >>> @attrs.frozen
    ... class RateLimited:
    ...     retry_after: float | None
    >>> isinstance(RateLimited(30.0), RetryAfter)
    True
    >>> busy = fake("api", error=RateLimited(30.0)).retry(1, backoff=Backoff(base=1))
    >>> run_virtual(busy, None)[1]
    30.0
    """

    @property
    def retry_after(self) -> float | None: ...


def _positive(name: str, allow_zero: bool = True):  # type: ignore[no-untyped-def]
    """An attrs validator: a finite real number (not a bool), ``>= 0`` or ``> 0``."""
    bound = ">= 0" if allow_zero else "> 0"

    def check(_: object, attribute: attrs.Attribute[float], value: float) -> None:
        try:
            number = _real(value, "Backoff", name, bound=bound)
        except BuildError:
            number = math.nan
        if not (number >= 0 if allow_zero else number > 0):
            msg = f"Backoff.{name} must be a finite number {bound}, got {_show(value)}"
            raise BuildError(msg) from None

    return check


def _seed(_: object, attribute: attrs.Attribute[int | None], value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | str | bytes)):
        msg = f"Backoff.seed must be an int, a str or None, got {_show(value)}"
        raise BuildError(msg)


@attrs.frozen
class Backoff:
    """Delay before retry ``k`` (1-based): ``min(cap, base * factor**(k-1))``.

    With ``jitter`` in ``(0, 1]`` the delay is drawn uniformly from
    ``[delay * (1 - jitter), delay]`` (so it never exceeds the cap).  With a
    ``seed``, each run of a retry node draws from its own source, seeded by
    ``seed`` and the node's path: a seeded run repeats exactly, even inside
    a fan-out whose elements trio runs in any order.

    >>> Backoff(base=1, factor=2, cap=5).delay(4)
    5.0
    """

    base: float = attrs.field(default=0.1, validator=_positive("base"))
    factor: float = attrs.field(default=2.0, validator=_positive("factor", allow_zero=False))
    cap: float = attrs.field(default=30.0, validator=_positive("cap"))
    jitter: float = attrs.field(default=0.0, validator=_positive("jitter"))
    seed: int | None = attrs.field(default=None, validator=_seed)

    def __attrs_post_init__(self) -> None:
        if self.jitter > 1:
            msg = f"Backoff.jitter is a fraction in [0, 1], got {self.jitter!r}"
            raise BuildError(msg)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (1 = first retry)."""
        try:
            raw = self.base * self.factor ** (attempt - 1) if self.base else 0.0
        except OverflowError:  # far past the cap
            raw = math.inf
        delay = float(min(self.cap, raw))
        if self.jitter and rng is not None:
            delay -= delay * self.jitter * rng.random()
        return delay

    def rng(self, path: str = "") -> random.Random:
        """The random source for one run of the retry node at ``path``.

        Seeded by ``seed`` and ``path`` when ``seed`` is set (a string seed is
        hashed with SHA-512, the same in every process); else unseeded.
        """
        return random.Random(f"{self.seed}/{path}") if self.seed is not None else random.Random()


def hinted_delay(error: object) -> float:
    """The ``retry_after`` an error value asks for, or 0."""
    hint = getattr(error, "retry_after", None)
    if isinstance(hint, int | float) and not isinstance(hint, bool) and hint > 0:
        return float(hint)
    return 0.0
