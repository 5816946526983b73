"""The rules every fail-fast nursery follows for what its children raise.

A child task that meets an ``Exception`` (a bug in an agent) keeps the
first one and cancels its siblings; the parent re-raises it as itself once
the nursery has closed, so users see their exception, not an
``ExceptionGroup`` of it.  ``BaseException``\\ s are never caught in the
children; :func:`open_nursery` gives the ones that are not cancellations
(``KeyboardInterrupt``, ``SystemExit``) the same treatment at the nursery's
edge, so ``except KeyboardInterrupt`` around a run works whatever the tree.
"""

from __future__ import annotations

from types import TracebackType

import trio


def keep_first_crash(crash: list[BaseException], scope: trio.CancelScope, exc: BaseException) -> None:
    """Remember ``exc`` if it is the first crash, and cancel the siblings."""
    if not crash:
        crash.append(exc)
    scope.cancel()


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    stack: list[BaseException] = [group]
    while stack:
        exc = stack.pop()
        if isinstance(exc, BaseExceptionGroup):
            stack.extend(reversed(exc.exceptions))
        else:
            out.append(exc)
    return out


class open_nursery:  # noqa: N801 - used like trio.open_nursery
    """``trio.open_nursery()`` whose group of non-cancellation exceptions comes out as the first one.

    A group that holds a ``trio.Cancelled`` is left alone: the cancel scope
    it belongs to must see it.
    """

    __slots__ = ("_manager",)

    def __init__(self) -> None:
        self._manager = trio.open_nursery()

    async def __aenter__(self) -> trio.Nursery:
        return await self._manager.__aenter__()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        try:
            return await self._manager.__aexit__(kind, exc, tb)
        except BaseExceptionGroup as group:
            leaves = _leaves(group)
            if not leaves or any(isinstance(e, trio.Cancelled) for e in leaves):
                raise
            first = leaves[0]
        # Raised outside the handler, so it keeps its own cause and context.
        raise first
